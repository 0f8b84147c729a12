package registration

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestOrganizersEditEvents(t *testing.T) {
	h := newHarness(t)
	ev := h.createEvent("editable", func(b map[string]any) {
		b["venue"] = map[string]any{"name": "Hofburg", "address": "Heldenplatz"}
	})
	h.createEvent("taken")

	r := h.admin.Do(t, "PATCH", "/admin/events/"+ev.ID, map[string]any{
		"title": "Roundtable, moved to the Redoutensaal", "venue": map[string]any{"name": "Redoutensaal"},
		"capacity": map[string]any{"in_person": 40}, "id": "ignored",
	})
	if r.Status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	var got Event
	r.JSON(t, &got)
	if got.ID != ev.ID || got.Version != 2 || got.Title != "Roundtable, moved to the Redoutensaal" ||
		got.Venue.Name != "Redoutensaal" || got.Venue.Address != "Heldenplatz" || got.Capacity.InPerson != 40 {
		t.Fatalf("patched event %+v", got)
	}
	var announced []events.Event
	for _, env := range filterType(t, h, events.EventUpdated) {
		var p events.Event
		_ = env.Decode(&p)
		announced = append(announced, p)
	}
	if len(announced) != 1 || announced[0].Version != 2 || announced[0].Title != got.Title {
		t.Fatalf("announced %+v", announced)
	}

	cases := map[string]struct {
		patch  any
		status int
		want   string
	}{
		"bad zone":       {map[string]any{"timezone": "Mars/Olympus"}, 422, `"field":"timezone"`},
		"wrong type":     {map[string]any{"capacity": map[string]any{"online": "many"}}, 422, "capacity.online"},
		"slug taken":     {map[string]any{"slug": "taken"}, 409, "slug_taken"},
		"unknown event":  {map[string]any{"title": "x"}, 404, "not_found"},
		"removing title": {map[string]any{"title": nil}, 422, `"field":"title"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			id := ev.ID
			if name == "unknown event" {
				id = "nope"
			}
			r := h.admin.Do(t, "PATCH", "/admin/events/"+id, tc.patch)
			if r.Status != tc.status || !strings.Contains(string(r.Body), tc.want) {
				t.Fatalf("%d %s, want %d with %s", r.Status, r.Body, tc.status, tc.want)
			}
		})
	}
	if n := len(filterType(t, h, events.EventUpdated)); n != 1 {
		t.Fatalf("%d updates announced after refused patches, want 1", n)
	}
}

// An edit made from a version that is no longer current is refused, and a
// replay of an applied edit is not mistaken for a conflict.
func TestEventEditConflictsAndReplays(t *testing.T) {
	h := newHarness(t)
	ev := h.createEvent("conflicts")
	ctx := context.Background()
	db := h.database()
	r := &registrar{store: newStore(db), public: h.cfg.PublicURL}

	cur, err := r.store.eventByID(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	apply := func(title, revision string, from int64) error {
		next := *cur
		next.Title, next.Version, next.Revision = title, from+1, revision
		entry, err := store.NewEntry(kindEventUpdate, events.Envelope{ID: revision, Type: events.EventUpdated},
			eventUpdate{Event: next, From: from})
		if err != nil {
			t.Fatal(err)
		}
		return r.applyEventUpdate(ctx, &entry)
	}
	if err := apply("first", "rev-1", 1); err != nil {
		t.Fatalf("first edit: %v", err)
	}
	if err := apply("first", "rev-1", 1); err != nil {
		t.Fatalf("replayed edit: %v", err)
	}
	if err := apply("second", "rev-2", 1); !errors.Is(err, errEventChanged) {
		t.Fatalf("edit from a stale version: %v, want errEventChanged", err)
	}
	if now, _ := r.store.eventByID(ctx, ev.ID); now.Title != "first" || now.Version != 2 {
		t.Fatalf("event now %q v%d", now.Title, now.Version)
	}
}

func filterType(t *testing.T, h *harness, typ string) []events.Envelope {
	t.Helper()
	return testkit.OfType(testkit.ReadStream(t, h.bus.JS, events.StreamRegistration), typ)
}
