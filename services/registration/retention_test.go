package registration

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
)

// An event past its retention period has its registrations anonymised:
// each announced as erased, nothing personal left in the database, and a
// registration's own page says so.
func TestRetentionAnonymisesPastEvents(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RetentionInterval = 200 * time.Millisecond })
	ev := h.createEvent("past", func(b map[string]any) { b["retention_days"] = 1 })
	h.createEvent("current")
	for _, who := range []string{"ada@example.org", "grace@example.org"} {
		h.register("past", who, events.ModeOnline)
	}
	h.register("current", "kept@example.org", events.ModeOnline)
	confirmed := h.waitPublished(events.RegistrationConfirmed, 3)

	// The event took place last week: two days past its one day of retention.
	r := h.admin.Do(t, "PATCH", "/admin/events/"+ev.ID, map[string]any{
		"starts_at": time.Now().Add(-4 * 24 * time.Hour).Format(time.RFC3339),
		"ends_at":   time.Now().Add(-3 * 24 * time.Hour).Format(time.RFC3339),
	}, "Content-Type", "application/merge-patch+json")
	if r.Status != http.StatusOK {
		t.Fatalf("move the event to the past: %d %s", r.Status, r.Body)
	}
	erased := h.waitPublished(events.RegistrationErased, 2)
	for _, p := range erased {
		if p.Email != "" || p.Name != "" || p.EventID != ev.ID {
			t.Errorf("erased announced with personal data or for the wrong event: %+v", p)
		}
	}
	for _, p := range confirmed {
		tok := p.ManageURL[len("http://plenary.test/r/"):]
		v := h.pub.Do(t, "GET", "/api/manage/"+tok, nil)
		var got struct {
			Name, Email string
			Erased      bool
		}
		v.JSON(t, &got)
		want := p.EventID == ev.ID
		if got.Erased != want || (want && (got.Name != "" || got.Email != "")) {
			t.Errorf("%s: erased %v, name %q, email %q; want erased %v", p.Email, got.Erased, got.Name, got.Email, want)
		}
	}
	// Later rounds find nothing left to anonymise (what retention asks the
	// decider for), and nothing was erased twice.
	left, err := newStore(h.database()).registrations.CountDocuments(context.Background(), bson.D{
		{Key: "event_id", Value: ev.ID}, {Key: "erased_at", Value: bson.D{{Key: "$exists", Value: false}}},
	})
	if err != nil || left != 0 {
		t.Fatalf("%d registrations of the past event left to anonymise (%v)", left, err)
	}
	if n := len(h.published(events.RegistrationErased)); n != 2 {
		t.Fatalf("%d erased events, want 2", n)
	}
}
