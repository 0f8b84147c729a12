package registration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// publishRelease publishes rel as the agenda service does.
func publishRelease(t *testing.T, h *harness, rel events.Release) {
	t.Helper()
	env, err := events.New("plenary/agenda", events.AgendaReleasePublished, rel.EventID, rel)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.bus.PublishEvent(ctx, env); err != nil {
		t.Fatal(err)
	}
}

// withSession returns rel with a copy of its sessions, session id changed
// by f.
func withSession(rel events.Release, version int, id string, f func(*events.Session)) events.Release {
	rel.Version, rel.Previous = version, version-1
	rel.Sessions = slices.Clone(rel.Sessions)
	for i := range rel.Sessions {
		if rel.Sessions[i].ID == id {
			f(&rel.Sessions[i])
		}
	}
	return rel
}

func TestJoinSessionOpensOnlyThatSessionInItsWindow(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	ev := h.createEvent("sessions", func(b map[string]any) {
		b["starts_at"] = now.Add(-time.Hour).Format(time.RFC3339)
		b["ends_at"] = now.Add(10 * time.Hour).Format(time.RFC3339)
	}) // opens 15 minutes before; the event's meeting is https://meet.example.org/osce
	const eventMeeting = "https://meet.example.org/osce"

	registerVia(t, h.pub, "sessions", regBody("P", "online@example.org", events.ModeOnline))
	registerVia(t, h.pub, "sessions", regBody("V", "venue@example.org", events.ModeInPerson))
	online := h.outcome(events.RegistrationConfirmed, "online@example.org")
	venue := h.outcome(events.RegistrationConfirmed, "venue@example.org")
	tok := token(online.JoinURL)
	join := func(session string, query ...string) testkit.Response {
		t.Helper()
		q := url.Values{}
		if session != "" {
			q.Set("session", session)
		}
		for i := 0; i+1 < len(query); i += 2 {
			q.Set(query[i], query[i+1])
		}
		path := "/j/" + tok
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		r := h.pub.Do(t, "GET", path, nil)
		if strings.Contains(string(r.Body), tok) || strings.Contains(r.Header.Get("Location"), tok) {
			t.Fatalf("the join token was echoed back")
		}
		return r
	}
	var joined []string // session ids of the joins that went through, in order
	wantOpen := func(t *testing.T, session, meeting string) {
		t.Helper()
		r := join(session)
		if r.Status != http.StatusFound || r.Header.Get("Location") != meeting {
			t.Fatalf("session %q: %d → %q, want 302 → %q; %s", session, r.Status, r.Header.Get("Location"), meeting, r.Body)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("session %q: Cache-Control %q, want no-store", session, cc)
		}
		joined = append(joined, session)
	}
	wantRefused := func(t *testing.T, session string, status int, says ...string) {
		t.Helper()
		r := join(session)
		if r.Status != status || r.Header.Get("Location") != "" {
			t.Fatalf("session %q: %d → %q, want %d with a page; %s", session, r.Status, r.Header.Get("Location"), status, r.Body)
		}
		for _, s := range says {
			if !strings.Contains(string(r.Body), s) {
				t.Errorf("session %q: page lacks %q: %s", session, s, r.Body)
			}
		}
	}

	m := func(d time.Duration) time.Time { return now.Add(d).UTC() }
	v1 := events.Release{
		EventID: ev.ID, Slug: ev.Slug, Title: ev.Title, Timezone: ev.Timezone, Version: 1, PublishedAt: now.UTC(),
		Sessions: []events.Session{
			{ID: "sess-c", Title: "Morning briefing", StartsAt: m(-3 * time.Hour), EndsAt: m(-2 * time.Hour), Format: events.FormatOnline, JoinURL: "https://meet.example.org/c"},
			{ID: "sess-a", Title: "Opening panel", StartsAt: m(-30 * time.Minute), EndsAt: m(30 * time.Minute), Format: events.FormatOnline, JoinURL: "https://meet.example.org/a"},
			{ID: "sess-d", Title: "Hybrid roundtable", StartsAt: m(-10 * time.Minute), EndsAt: m(50 * time.Minute), Format: events.FormatHybrid},
			{ID: "sess-e", Title: "Dropped talk", StartsAt: m(-10 * time.Minute), EndsAt: m(50 * time.Minute), Format: events.FormatOnline, JoinURL: "https://meet.example.org/e", Cancelled: true},
			{ID: "sess-f", Title: "Site visit", StartsAt: m(-10 * time.Minute), EndsAt: m(50 * time.Minute), Format: events.FormatInPerson, JoinURL: "https://meet.example.org/f"},
			{ID: "sess-g", Title: "Early doors", StartsAt: m(10 * time.Minute), EndsAt: m(70 * time.Minute), Format: events.FormatOnline, JoinURL: "https://meet.example.org/g"},
			{ID: "sess-b", Title: "Closing <panel>", StartsAt: m(3 * time.Hour), EndsAt: m(4 * time.Hour), Format: events.FormatHybrid, JoinURL: "https://meet.example.org/b"},
		},
	}

	// Before any release reaches the service, no session is known.
	wantRefused(t, "sess-a", http.StatusNotFound, "This session is not on the agenda")

	publishRelease(t, h, v1)
	testkit.Eventually(t, 10*time.Second, func() error {
		if r := join("sess-a"); r.Status != http.StatusFound {
			return fmt.Errorf("session A: %d, want 302 once the release is replicated", r.Status)
		}
		joined = append(joined, "sess-a")
		return nil
	})
	// An id typed in capitals is the same session.
	if r := join("SESS-A"); r.Status != http.StatusFound || r.Header.Get("Location") != v1.Session("sess-a").JoinURL {
		t.Fatalf("session SESS-A: %d → %q", r.Status, r.Header.Get("Location"))
	}
	joined = append(joined, "sess-a")

	vienna, err := time.LoadLocation("Europe/Vienna")
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := i18n.New()
	if err != nil {
		t.Fatal(err)
	}
	bOpens := catalog.For("en").DateTime(v1.Session("sess-b").StartsAt.Add(-15*time.Minute), vienna)

	t.Run("open now, its own meeting", func(t *testing.T) { wantOpen(t, "sess-a", "https://meet.example.org/a") })
	t.Run("open now, the event's meeting", func(t *testing.T) { wantOpen(t, "sess-d", eventMeeting) })
	t.Run("opens minutes before its start", func(t *testing.T) { wantOpen(t, "sess-g", "https://meet.example.org/g") })
	t.Run("later today", func(t *testing.T) {
		wantRefused(t, "sess-b", http.StatusForbidden, "This session is not open yet", bOpens, "Closing &lt;panel&gt;")
	})
	t.Run("ended", func(t *testing.T) { wantRefused(t, "sess-c", http.StatusGone, "This session has ended") })
	t.Run("cancelled", func(t *testing.T) { wantRefused(t, "sess-e", http.StatusGone, "This session was cancelled") })
	t.Run("in person only", func(t *testing.T) {
		wantRefused(t, "sess-f", http.StatusForbidden, "This session is in person only")
	})
	t.Run("unknown or malformed session", func(t *testing.T) {
		for _, id := range []string{"sess-z", "../sess-a", "sess a", "sess-a'", strings.Repeat("s", 65)} {
			wantRefused(t, id, http.StatusNotFound, "This session is not on the agenda")
		}
	})
	t.Run("without a session, the event as before", func(t *testing.T) { wantOpen(t, "", eventMeeting) })
	t.Run("in the participant's language, keeping the session", func(t *testing.T) {
		r := join("sess-b", "lang", "fr")
		if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "Cette séance n’est pas encore ouverte") ||
			!strings.Contains(string(r.Body), catalog.For("fr").DateTime(v1.Session("sess-b").StartsAt.Add(-15*time.Minute), vienna)) {
			t.Fatalf("in French: %d %s", r.Status, r.Body)
		}
		if !strings.Contains(string(r.Body), `href="?session=sess-b&amp;lang=en"`) {
			t.Errorf("the language links drop the session: %s", r.Body)
		}
	})
	t.Run("in-person registration", func(t *testing.T) {
		// In-person registrations get no join link; forge one with the key.
		signer, err := links.NewSigner([]byte(h.cfg.LinkKey))
		if err != nil {
			t.Fatal(err)
		}
		_, version, err := signer.Parse(links.Manage, token(venue.ManageURL))
		if err != nil {
			t.Fatal(err)
		}
		r := h.pub.Do(t, "GET", "/j/"+signer.Token(links.Join, venue.ID, version)+"?session=sess-a", nil)
		if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "This link is for online attendance") {
			t.Fatalf("in-person registration, session A: %d %s", r.Status, r.Body)
		}
		r = h.pub.Do(t, "GET", "/j/"+token(venue.ManageURL)+"?session=sess-a", nil)
		if r.Status != http.StatusNotFound {
			t.Fatalf("a manage token as a session join link: %d", r.Status)
		}
	})

	// A later release moves B into its window: the replica follows it.
	v3 := withSession(v1, 3, "sess-b", func(s *events.Session) {
		s.StartsAt, s.EndsAt = m(-5*time.Minute), m(55*time.Minute)
	})
	publishRelease(t, h, v3)
	testkit.Eventually(t, 10*time.Second, func() error {
		if r := join("sess-b"); r.Status != http.StatusFound {
			return fmt.Errorf("session B: %d, want 302 once release 3 is replicated", r.Status)
		}
		joined = append(joined, "sess-b")
		return nil
	})
	// An older release published late, and the same version again with
	// other content, change nothing.
	v2 := withSession(v1, 2, "sess-a", func(s *events.Session) { s.JoinURL = "https://meet.example.org/stale" })
	publishRelease(t, h, v2)
	publishRelease(t, h, withSession(v3, 3, "sess-a", func(s *events.Session) { s.Cancelled = true }))
	testkit.WaitIdle(t, h.bus.JS, events.StreamAgenda, agendaConsumer)
	t.Run("older release published late", func(t *testing.T) {
		wantOpen(t, "sess-a", "https://meet.example.org/a")
		wantOpen(t, "sess-b", "https://meet.example.org/b")
	})

	// Each join that went through is recorded and announced with its
	// session; refusals are not.
	var announced []string
	testkit.Eventually(t, 10*time.Second, func() error {
		announced = announced[:0]
		for _, env := range testkit.OfType(testkit.ReadStream(t, h.bus.JS, events.StreamRegistration), events.AttendanceJoined) {
			var a events.Attendance
			if err := env.Decode(&a); err != nil {
				return err
			}
			if a.RegistrationID != online.ID || a.EventID != ev.ID {
				return fmt.Errorf("join announced for %s/%s", a.EventID, a.RegistrationID)
			}
			announced = append(announced, a.SessionID)
		}
		if !slices.Equal(slices.Sorted(slices.Values(announced)), slices.Sorted(slices.Values(joined))) {
			return fmt.Errorf("joins announced with sessions %q, want %q", announced, joined)
		}
		return nil
	})
	db := h.database()
	testkit.Eventually(t, 10*time.Second, func() error {
		cur, err := db.Collection("attendance").Find(context.Background(), bson.D{{Key: "event_id", Value: ev.ID}})
		if err != nil {
			return err
		}
		var records []attendance
		if err := cur.All(context.Background(), &records); err != nil {
			return err
		}
		var stored []string
		for _, a := range records {
			stored = append(stored, a.SessionID)
		}
		if !slices.Equal(slices.Sorted(slices.Values(stored)), slices.Sorted(slices.Values(joined))) {
			return fmt.Errorf("attendance records with sessions %q, want %q", stored, joined)
		}
		return nil
	})
}
