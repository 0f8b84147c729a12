package agenda

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// harness is a running agenda service with its NATS, and clients for it.
type harness struct {
	nats   *testkit.NATS
	bus    *bus.Bus
	base   string
	admin  testkit.Client // token named "secretariat"
	public testkit.Client
	cfg    Config
	stop   func()
}

func start(t *testing.T) *harness {
	t.Helper()
	nats := testkit.StartNATS(t)
	ln, base := testkit.Listen(t)
	cfg := Config{
		Common: service.Common{
			MongoURI: testkit.MongoURI(t), MongoDatabase: testkit.DatabaseName(t),
			NATSURL: nats.URL, ConnectWait: 5 * time.Second, Listener: ln,
		},
		PublicURL:      "https://plenary.example.org",
		AdminTokens:    []string{"secretariat:tok", "plain"},
		OutboxInterval: 200 * time.Millisecond,
	}
	h := &harness{nats: nats, bus: nats.Bus(t), base: base, cfg: cfg,
		admin: testkit.Client{Base: base, Token: "tok"}, public: testkit.Client{Base: base}}
	h.stop = testkit.Serve(t, func(ctx context.Context) error { return Run(ctx, cfg, testkit.Logger(t)) })
	return h
}

// vienna is the roundtable's zone.
var vienna = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Vienna")
	if err != nil {
		panic(err)
	}
	return loc
}()

// roundtable is a two-day event in Vienna, 9–10 November 2027.
func roundtable(id string) events.Event {
	return events.Event{
		ID: id, Version: 1, Slug: "roundtable-" + id, Title: "Roundtable " + id, Timezone: "Europe/Vienna",
		StartsAt: time.Date(2027, 11, 9, 9, 0, 0, 0, vienna), EndsAt: time.Date(2027, 11, 10, 17, 30, 0, 0, vienna),
		Locales: []string{"en", "fr", "de", "it", "ru", "es"},
	}
}

// event publishes ev as the registration service would and waits until the
// agenda service knows it.
func (h *harness) event(t *testing.T, ev events.Event) {
	t.Helper()
	typ := events.EventCreated
	if ev.Version > 1 {
		typ = events.EventUpdated
	}
	env, err := events.New("test", typ, ev.ID, ev)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, func() error { return h.bus.PublishEvent(context.Background(), env) })
	testkit.Eventually(t, 10*time.Second, func() error {
		var d struct{ EventID string }
		r := h.admin.Do(t, "GET", "/admin/events/"+ev.ID+"/agenda/draft", nil)
		if r.Status != http.StatusOK {
			return fmt.Errorf("draft: %d %s", r.Status, r.Body)
		}
		r.JSON(t, &d)
		return nil
	})
}

// at is a time on the roundtable's first (day 0) or second (day 1) day.
func at(day, hour, minute int) string {
	return time.Date(2027, 11, 9+day, hour, minute, 0, 0, vienna).Format(time.RFC3339)
}

// session creates a session and returns its id.
func (h *harness) session(t *testing.T, eventID string, body map[string]any) string {
	t.Helper()
	r := h.admin.Do(t, "POST", "/admin/events/"+eventID+"/sessions", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("create session: %d %s", r.Status, r.Body)
	}
	var s struct{ ID string }
	r.JSON(t, &s)
	return s.ID
}

// publish publishes the draft and returns the release's version.
func (h *harness) publish(t *testing.T, eventID, note string) int {
	t.Helper()
	r := h.admin.Do(t, "POST", "/admin/events/"+eventID+"/agenda/releases", map[string]any{"note": note})
	if r.Status != http.StatusCreated {
		t.Fatalf("publish: %d %s", r.Status, r.Body)
	}
	var rel struct{ Version int }
	r.JSON(t, &rel)
	return rel.Version
}

// panel is a session body: a panel on day 0 from hour to hour+1 in room.
func panel(title string, hour int, room string) map[string]any {
	return map[string]any{
		"title": title, "starts_at": at(0, hour, 0), "ends_at": at(0, hour+1, 0),
		"room": room, "format": "hybrid",
		"speakers": []map[string]any{{"name": "Speaker of " + title, "affiliation": "OSCE"}},
	}
}
