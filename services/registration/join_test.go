package registration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestJoinLinkOpensTheMeetingOnlyWhenItShould(t *testing.T) {
	h := newHarness(t)
	h.createEvent("live", func(b map[string]any) {
		b["starts_at"] = time.Now().Add(-time.Hour).Format(time.RFC3339)
		b["ends_at"] = time.Now().Add(time.Hour).Format(time.RFC3339)
		b["capacity"] = map[string]any{"online": 1}
		b["registration"] = map[string]any{"waitlist": true}
	})
	h.createEvent("later") // starts in three days

	registered := func(slug, email, mode string, status string) events.Registration {
		t.Helper()
		h.pub.Do(t, "POST", "/api/events/"+slug+"/registrations", map[string]any{
			"name": "P", "email": email, "mode": mode, "consent": true, "waitlist_ok": true,
		})
		var got events.Registration
		testkit.Eventually(t, 10*time.Second, func() error {
			for _, p := range h.published("registration.v1.registration." + status) {
				if p.Email == email {
					got = p
					return nil
				}
			}
			return testkit.Errorf("%s not %s yet", email, status)
		})
		return got
	}
	path := func(u string) string { return strings.TrimPrefix(u, "http://plenary.test") }

	confirmed := path(registered("live", "online@example.org", events.ModeOnline, events.StatusConfirmed).JoinURL)
	r := h.pub.Do(t, "GET", confirmed, nil)
	if r.Status != http.StatusFound || r.Header.Get("Location") != "https://meet.example.org/osce" {
		t.Fatalf("confirmed attendee during the event: %d → %q", r.Status, r.Header.Get("Location"))
	}
	if r.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("Referrer-Policy %q", r.Header.Get("Referrer-Policy"))
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		joins := testkit.OfType(testkit.ReadStream(t, h.bus.JS, events.StreamRegistration), events.AttendanceJoined)
		if len(joins) != 1 {
			return testkit.Errorf("%d joins announced, want 1", len(joins))
		}
		return nil
	})

	waitlisted := path(registered("live", "second@example.org", events.ModeOnline, events.StatusWaitlisted).JoinURL)
	early := path(registered("later", "early@example.org", events.ModeOnline, events.StatusConfirmed).JoinURL)
	inPerson := registered("later", "venue@example.org", events.ModeInPerson, events.StatusConfirmed)
	if inPerson.JoinURL != "" {
		t.Errorf("an in-person registration got a join link")
	}
	cases := map[string]struct {
		path   string
		status int
		want   string
	}{
		"waitlisted":           {waitlisted, http.StatusForbidden, "not confirmed"},
		"before it opens":      {early, http.StatusForbidden, "not open yet"},
		"forged":               {confirmed[:len(confirmed)-3] + "abc", http.StatusNotFound, "not valid"},
		"manage token as join": {"/j/" + strings.TrimPrefix(path(inPerson.ManageURL), "/r/"), http.StatusNotFound, "not valid"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := h.pub.Do(t, "GET", tc.path, nil)
			if r.Status != tc.status || !strings.Contains(string(r.Body), tc.want) {
				t.Fatalf("%d %s, want %d with %q", r.Status, r.Body, tc.status, tc.want)
			}
		})
	}
}
