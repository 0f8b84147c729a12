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

func TestMain(m *testing.M) { testkit.Main(m) }

func TestReplicatesEventsInVersionOrder(t *testing.T) {
	h := start(t)
	admin, b := h.admin, h.bus
	publish := func(typ string, version int64, title string) {
		t.Helper()
		env, err := events.New("test", typ, "ev1", events.Event{ID: "ev1", Version: version, Slug: "roundtable", Title: title, Timezone: "Europe/Vienna"})
		if err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 5*time.Second, func() error { return b.PublishEvent(context.Background(), env) })
	}
	draftTitle := func() error {
		r := admin.Do(t, "GET", "/admin/events/ev1/agenda/draft", nil)
		if r.Status != http.StatusOK {
			return fmt.Errorf("draft: %d %s", r.Status, r.Body)
		}
		return nil
	}

	publish(events.EventCreated, 1, "First title")
	testkit.Eventually(t, 10*time.Second, draftTitle)
	publish(events.EventUpdated, 2, "Second title")
	testkit.Eventually(t, 10*time.Second, func() error {
		if r := admin.Do(t, "GET", "/admin/events/ev1/agenda/draft", nil); !strings.Contains(string(r.Body), "Second title") {
			return fmt.Errorf("draft still %s", r.Body)
		}
		return nil
	})
	// A late, older version must not win; a marker event after it tells us
	// the consumer got past it.
	publish(events.EventUpdated, 1, "Stale title")
	env, _ := events.New("test", events.EventCreated, "ev2", events.Event{ID: "ev2", Version: 1, Slug: "marker", Title: "Marker"})
	if err := b.PublishEvent(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if r := admin.Do(t, "GET", "/admin/events/ev2/agenda/draft", nil); r.Status != http.StatusOK {
			return fmt.Errorf("marker not replicated: %d", r.Status)
		}
		return nil
	})
	if r := admin.Do(t, "GET", "/admin/events/ev1/agenda/draft", nil); !strings.Contains(string(r.Body), "Second title") {
		t.Fatalf("an older version overwrote a newer one: %s", r.Body)
	}

	if r := h.public.Do(t, "GET", "/admin/events/ev1/agenda/draft", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", r.Status)
	}
	if r := admin.Do(t, "GET", "/admin/events/nope/agenda/draft", nil); r.Status != http.StatusNotFound {
		t.Errorf("unknown event: %d, want 404", r.Status)
	}
	if r := admin.Do(t, "GET", "/api/events/roundtable/agenda", nil); r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), "no_release") {
		t.Errorf("public agenda before any release: %d %s", r.Status, r.Body)
	}
}
