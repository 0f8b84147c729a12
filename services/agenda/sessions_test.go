package agenda

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// problem is an RFC 9457 body.
type problem struct {
	Type   string
	Status int
	Detail string
	Errors []struct{ Field, Message string }
}

func (p problem) fields() []string {
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

func TestSessionValidationNamesTheField(t *testing.T) {
	h := start(t)
	h.event(t, roundtable("ev1"))
	valid := func(edit func(map[string]any)) map[string]any {
		b := panel("Countering terrorism", 10, "Neuer Saal")
		b["join_url"] = "https://meet.example.org/terrorism"
		if edit != nil {
			edit(b)
		}
		return b
	}
	tests := []struct {
		name  string
		body  any
		field string
	}{
		{"title missing", valid(func(b map[string]any) { delete(b, "title") }), "title"},
		{"title of 300 characters", valid(func(b map[string]any) { b["title"] = strings.Repeat("é", 300) }), "title"},
		{"title with a line break", valid(func(b map[string]any) { b["title"] = "A\r\nB" }), "title"},
		{"end before start", valid(func(b map[string]any) { b["ends_at"] = at(0, 9, 0) }), "ends_at"},
		{"end equal to start", valid(func(b map[string]any) { b["ends_at"] = at(0, 10, 0) }), "ends_at"},
		{"before the event's dates", valid(func(b map[string]any) {
			b["starts_at"], b["ends_at"] = at(-1, 10, 0), at(-1, 11, 0)
		}), "starts_at"},
		{"after the event's dates", valid(func(b map[string]any) {
			b["starts_at"], b["ends_at"] = at(2, 10, 0), at(2, 11, 0)
		}), "starts_at"},
		{"start not a time", valid(func(b map[string]any) { b["starts_at"] = "tomorrow" }), "starts_at"},
		{"time without offset", valid(func(b map[string]any) { b["starts_at"] = "2027-11-09T10:00:00" }), "starts_at"},
		{"unknown format", valid(func(b map[string]any) { b["format"] = "telepathy" }), "format"},
		{"URL not http(s)", valid(func(b map[string]any) { b["join_url"] = "javascript:alert(1)" }), "join_url"},
		{"URL without host", valid(func(b map[string]any) { b["join_url"] = "https://" }), "join_url"},
		{"speaker without a name", valid(func(b map[string]any) {
			b["speakers"] = []map[string]any{{"affiliation": "EU"}}
		}), "speakers[0].name"},
		{"a typo in a field name", valid(func(b map[string]any) { b["titel"] = "x" }), "titel"},
		{"a number for a title", valid(func(b map[string]any) { b["title"] = 42 }), "title"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.admin.Do(t, "POST", "/admin/events/ev1/sessions", tc.body)
			if r.Status != http.StatusUnprocessableEntity || r.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %s %s, want a 422 problem", r.Status, r.Header.Get("Content-Type"), r.Body)
			}
			var p problem
			r.JSON(t, &p)
			if !slices.Contains(p.fields(), tc.field) {
				t.Fatalf("errors name %v, want %s: %s", p.fields(), tc.field, r.Body)
			}
		})
	}
	t.Run("unknown event", func(t *testing.T) {
		r := h.admin.Do(t, "POST", "/admin/events/nope/sessions", valid(nil))
		var p problem
		r.JSON(t, &p)
		if r.Status != http.StatusNotFound || !strings.Contains(p.Detail, `"nope"`) {
			t.Fatalf("%d %s, want a 404 naming the event", r.Status, r.Body)
		}
	})
	t.Run("not JSON", func(t *testing.T) {
		if r := h.admin.Do(t, "POST", "/admin/events/ev1/sessions", []byte("{")); r.Status != http.StatusBadRequest {
			t.Fatalf("%d %s, want 400", r.Status, r.Body)
		}
	})
	if r := h.admin.Do(t, "GET", "/admin/events/ev1/agenda/draft", nil); strings.Contains(string(r.Body), "terrorism") {
		t.Fatalf("a refused session reached the draft: %s", r.Body)
	}
	if r := h.admin.Do(t, "POST", "/admin/events/ev1/sessions", valid(nil)); r.Status != http.StatusCreated {
		t.Fatalf("the valid body itself: %d %s", r.Status, r.Body)
	}
}

// draftOf reads the draft.
func (h *harness) draftOf(t *testing.T, eventID string) draftView {
	t.Helper()
	r := h.admin.Do(t, "GET", "/admin/events/"+eventID+"/agenda/draft", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("draft: %d %s", r.Status, r.Body)
	}
	var d draftView
	r.JSON(t, &d)
	return d
}

func TestEditDraftWithMergePatchAndWarnings(t *testing.T) {
	h := start(t)
	h.event(t, roundtable("ev1"))
	trafficking := h.session(t, "ev1", panel("Human trafficking", 10, "Neuer Saal"))
	terrorism := h.session(t, "ev1", panel("Countering terrorism", 14, "Ratsaal"))

	// A merge patch changes what it names and keeps the rest.
	r := h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+terrorism, map[string]any{
		"starts_at": at(0, 10, 30), "ends_at": at(0, 11, 30), "room": "neuer  saal",
		"speakers": []map[string]any{{"name": "speaker of human trafficking"}},
	})
	if r.Status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	var got sessionResponse
	r.JSON(t, &got)
	if got.Title != "Countering terrorism" || got.Format != events.FormatHybrid || !got.StartsAt.Equal(mustTime(t, at(0, 10, 30))) {
		t.Fatalf("patched session %+v", got.Session)
	}
	// Warnings, not errors: one room, one speaker, twice at once.
	codes := func(ws []Warning) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.Code)
		}
		slices.Sort(out)
		return out
	}
	if c := codes(got.Warnings); !slices.Equal(c, []string{warnRoom, warnSpeaker}) {
		t.Fatalf("warnings %v, want a room and a speaker conflict", got.Warnings)
	}
	d := h.draftOf(t, "ev1")
	if len(d.Sessions) != 2 || d.Sessions[0].ID != trafficking || len(d.Sessions[1].Flags) != 2 {
		t.Fatalf("draft %+v", d)
	}

	// null removes a field; a bad patch changes nothing.
	if r := h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+terrorism, map[string]any{"room": nil}); r.Status != http.StatusOK {
		t.Fatalf("patch room null: %d %s", r.Status, r.Body)
	}
	if r := h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+terrorism, map[string]any{"title": nil}); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("removing the title: %d %s", r.Status, r.Body)
	}
	if r := h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+terrorism, []byte(`["title"]`)); r.Status != http.StatusBadRequest {
		t.Fatalf("a patch that is not an object: %d %s", r.Status, r.Body)
	}
	d = h.draftOf(t, "ev1")
	if s := d.Sessions[1]; s.Room != "" || s.Title != "Countering terrorism" || len(s.Flags) != 1 || s.Flags[0] != warnSpeaker {
		t.Fatalf("after patches: %+v", s)
	}

	for path, want := range map[string]int{
		"/admin/events/ev1/sessions/01aaaaaaaaaaaaaaaaaaaaaaaa": http.StatusNotFound,
		"/admin/events/ev1/sessions/../../x":                    http.StatusNotFound,
		"/admin/events/nope/sessions/" + terrorism:              http.StatusNotFound,
	} {
		if r := h.admin.Do(t, "PATCH", path, map[string]any{"room": "x"}); r.Status != want {
			t.Errorf("PATCH %s: %d, want %d", path, r.Status, want)
		}
	}
	if r := h.admin.Do(t, "DELETE", "/admin/events/ev1/sessions/"+trafficking, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := h.admin.Do(t, "DELETE", "/admin/events/ev1/sessions/"+trafficking, nil); r.Status != http.StatusNotFound {
		t.Fatalf("delete twice: %d %s", r.Status, r.Body)
	}
	if d := h.draftOf(t, "ev1"); len(d.Sessions) != 1 || d.Sessions[0].ID != terrorism || len(d.Warnings) != 0 {
		t.Fatalf("after delete: %+v", d)
	}
	if r := h.public.Do(t, "POST", "/admin/events/ev1/sessions", panel("x", 9, "")); r.Status != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", r.Status)
	}
}

func TestSessionsOutsideNewEventDatesAreFlaggedNotDropped(t *testing.T) {
	h := start(t)
	ev := roundtable("ev1")
	h.event(t, ev)
	day2 := h.session(t, "ev1", map[string]any{"title": "Closing", "starts_at": at(1, 15, 0), "ends_at": at(1, 16, 0)})
	h.session(t, "ev1", panel("Opening", 9, "Neuer Saal"))

	ev.Version, ev.EndsAt = 2, time.Date(2027, 11, 9, 18, 0, 0, 0, vienna) // one day only now
	h.event(t, ev)
	var d draftView
	testkit.Eventually(t, 10*time.Second, func() error {
		if d = h.draftOf(t, "ev1"); len(d.Warnings) == 0 {
			return fmt.Errorf("no warning yet: %+v", d)
		}
		return nil
	})
	if len(d.Sessions) != 2 || len(d.Warnings) != 1 || d.Warnings[0].Code != warnOutside || d.Warnings[0].Sessions[0] != day2 {
		t.Fatalf("draft after the event was shortened: %+v", d)
	}
	// Still publishable: organisers decide what to do with it.
	if v := h.publish(t, "ev1", "first"); v != 1 {
		t.Fatalf("version %d", v)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
