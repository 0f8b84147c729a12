package registration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/plenaryhq/plenary/pkg/events"
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

func filterType(t *testing.T, h *harness, typ string) []events.Envelope {
	t.Helper()
	return testkit.OfType(testkit.ReadStream(t, h.bus.JS, events.StreamRegistration), typ)
}
