package agenda

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// second starts another replica of the service on h's NATS and database.
func (h *harness) second(t *testing.T) testkit.Client {
	t.Helper()
	ln, base := testkit.Listen(t)
	cfg := h.cfg
	cfg.Listener = ln
	testkit.Serve(t, func(ctx context.Context) error { return Run(ctx, cfg, testkit.Logger(t)) })
	c := testkit.Client{Base: base, Token: "tok"}
	testkit.Eventually(t, 10*time.Second, func() error {
		if r := c.Do(t, "GET", "/healthz", nil); r.Status != http.StatusOK {
			return fmt.Errorf("healthz %d", r.Status)
		}
		return nil
	})
	return c
}

// TestReplicasShareTheDraftAndTheReleases: one replica edits far ahead of
// another (its old draft revisions pruned meanwhile); the other still reads
// the newest draft, builds on it and publishes after it without losing an
// edit, and both serve the newest release at once.
func TestReplicasShareTheDraftAndTheReleases(t *testing.T) {
	h := start(t)
	h.event(t, roundtable("ev1"))
	b := h.second(t)
	id := h.session(t, "ev1", panel("Human trafficking", 10, "Neuer Saal"))
	h.draftOf(t, "ev1") // replica A has seen the draft at revision 1
	for i := range keepDrafts + 5 {
		if r := b.Do(t, "PATCH", "/admin/events/ev1/sessions/"+id, map[string]any{"title": fmt.Sprint("Edit ", i)}); r.Status != http.StatusOK {
			t.Fatalf("edit on B: %d %s", r.Status, r.Body)
		}
	}
	done := make(chan draftView, 1)
	go func() { done <- h.draftOf(t, "ev1") }()
	var d draftView
	select {
	case d = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reading the draft on A did not finish")
	}
	if d.Revision != keepDrafts+6 || d.Sessions[0].Title != fmt.Sprint("Edit ", keepDrafts+4) {
		t.Fatalf("A reads revision %d with %q", d.Revision, d.Sessions[0].Title)
	}
	if r := h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+id, map[string]any{"room": "Ratsaal"}); r.Status != http.StatusOK {
		t.Fatalf("edit on A: %d %s", r.Status, r.Body)
	}
	if v := h.publish(t, "ev1", "one"); v != 1 {
		t.Fatalf("version %d", v)
	}
	var latest events.Release
	b.Do(t, "GET", "/api/events/roundtable-ev1/agenda", nil).JSON(t, &latest)
	if latest.Version != 1 || latest.Sessions[0].Room != "Ratsaal" || latest.Sessions[0].Title != fmt.Sprint("Edit ", keepDrafts+4) {
		t.Fatalf("B serves %+v", latest)
	}
	b.Do(t, "PATCH", "/admin/events/ev1/sessions/"+id, map[string]any{"room": "Neuer Saal"})
	r := b.Do(t, "POST", "/admin/events/ev1/agenda/releases", map[string]any{"note": "two"})
	if r.Status != http.StatusCreated {
		t.Fatalf("publish on B: %d %s", r.Status, r.Body)
	}
	// A answers with release 2 at once: no cache holds it back.
	h.public.Do(t, "GET", "/api/events/roundtable-ev1/agenda", nil).JSON(t, &latest)
	if latest.Version != 2 {
		t.Fatalf("A serves release %d after B published 2", latest.Version)
	}
}

func TestPublishRefusesAReleaseTooLargeToAnnounce(t *testing.T) {
	h := start(t)
	h.event(t, roundtable("ev1"))
	speakers := make([]map[string]any, maxSpeakers)
	for i := range speakers {
		speakers[i] = map[string]any{"name": strings.Repeat("Я", 190), "affiliation": strings.Repeat("Ж", 190)}
	}
	// 25 sessions of 30 speakers with long names: ~1.1 MB announced (the
	// first release lists every session twice, in the snapshot and as added).
	for i := range 25 {
		b := panel(fmt.Sprint("Panel ", i), 9+i%8, fmt.Sprint("Room ", i))
		b["speakers"] = speakers
		if r := h.admin.Do(t, "POST", "/admin/events/ev1/sessions", b); r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
	}
	r := h.admin.Do(t, "POST", "/admin/events/ev1/agenda/releases", map[string]any{"note": "big"})
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), "agenda_too_large") {
		t.Fatalf("publishing ~1 MB of speakers: %d %s", r.Status, r.Body)
	}
	if r := h.public.Do(t, "GET", "/api/events/roundtable-ev1/agenda", nil); r.Status != http.StatusNotFound {
		t.Fatalf("a refused release is served: %d", r.Status)
	}
}

func TestRenamedEventShowsInTheFeedAndFlaggedSessionsStayEditable(t *testing.T) {
	h := start(t)
	ev := roundtable("ev1")
	h.event(t, ev)
	closing := h.session(t, "ev1", map[string]any{"title": "Closing", "starts_at": at(1, 15, 0), "ends_at": at(1, 16, 0)})
	h.publish(t, "ev1", "first")
	first := h.public.Do(t, "GET", "/api/events/roundtable-ev1/agenda.ics", nil)

	ev.Version, ev.Title, ev.EndsAt = 2, "Roundtable renamed", time.Date(2027, 11, 9, 18, 0, 0, 0, vienna)
	h.event(t, ev)
	testkit.Eventually(t, 10*time.Second, func() error {
		r := h.public.Do(t, "GET", "/api/events/roundtable-ev1/agenda.ics", nil, "If-None-Match", first.Header.Get("ETag"))
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), "X-WR-CALNAME:Roundtable renamed") {
			return fmt.Errorf("feed after the rename: %d %s", r.Status, r.Body)
		}
		return nil
	})
	// The session is now outside the event: flagged, and still editable
	// as long as its times are left alone.
	if r := h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+closing, map[string]any{"room": "Ratsaal"}); r.Status != http.StatusOK {
		t.Fatalf("editing the room of a flagged session: %d %s", r.Status, r.Body)
	}
	if r := h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+closing, map[string]any{"starts_at": at(1, 14, 0)}); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("moving it to another time outside the event: %d %s", r.Status, r.Body)
	}
	for _, body := range []string{`{"note":"a"} {`, `[1]`, `{"note":"a"}{"note":"b"}`} {
		if r := h.admin.Do(t, "POST", "/admin/events/ev1/agenda/releases", []byte(body)); r.Status != http.StatusBadRequest || strings.Contains(string(r.Body), "struct") {
			t.Errorf("publish body %s: %d %s", body, r.Status, r.Body)
		}
	}
}
