package notification

import (
	"net/http"
	"strings"
	"testing"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/links"
)

func TestUnsubscribeFromAnnouncements(t *testing.T) {
	h := start(t)
	const eventID = "evt-01JUNSUB"
	people := h.enrol(eventID, map[string]person{
		"uma":  {events.StatusConfirmed, events.ModeOnline, "de"},
		"vera": {events.StatusConfirmed, events.ModeInPerson},
	})
	uma := people["uma"]
	h.waitJobs(2)

	h.announce(eventID, "Welcome", "Welcome to the roundtable.", audienceAll, "welcome")
	link := unsubscribeURL(t, jobTo(t, h.waitJobs(4), kindAnnouncement, uma.ID))
	path := strings.TrimPrefix(link, "http://localhost:8080")

	// A GET (a mail scanner, a link preview, the person opening the link)
	// shows a button and changes nothing.
	for range 2 {
		status, header, body := h.do(http.MethodGet, path, "", nil)
		page := string(body)
		if status != http.StatusOK || !strings.HasPrefix(header.Get("Content-Type"), "text/html") ||
			!strings.Contains(page, `<form method="post">`) || !strings.Contains(page, "Abbestellen") ||
			!strings.Contains(page, "Vienna Roundtable") || header.Get("Cache-Control") != "no-store" ||
			header.Get("Referrer-Policy") != "no-referrer" {
			t.Fatalf("GET %s: %d %v\n%s", "/u/…", status, header, page)
		}
	}
	if got := h.announce(eventID, "Lunch", "Lunch is at one.", audienceAll, ""); got.Recipients != 2 {
		t.Fatalf("after the GETs: %d recipients, want 2 (a GET must not unsubscribe)", got.Recipients)
	}
	h.waitJobs(6)

	// The one-click POST (RFC 8058), twice: the second is harmless.
	for range 2 {
		status, _, body := h.do(http.MethodPost, path, "", []byte("List-Unsubscribe=One-Click"),
			"Content-Type", "application/x-www-form-urlencoded")
		if status != http.StatusOK || strings.Contains(string(body), "<form") {
			t.Fatalf("one-click POST: %d %s", status, body)
		}
	}
	if _, _, body := h.do(http.MethodGet, path, "", nil); strings.Contains(string(body), "<form") {
		t.Errorf("the page still offers to unsubscribe: %s", body)
	}

	// The next announcement skips Uma, and so does a resend of the old one.
	next := h.announce(eventID, "Dinner", "Dinner is at eight.", audienceAll, "")
	if next.Recipients != 1 {
		t.Errorf("after unsubscribing: %d recipients, want 1", next.Recipients)
	}
	jobs := h.waitJobs(7)
	if last := jobs[6]; last.Kind != kindAnnouncement || last.RegistrationID == uma.ID {
		t.Errorf("dinner went to %s", last.To)
	}
	old := jobTo(t, jobs[2:4], kindAnnouncement, uma.ID)
	if status, _, body := h.do(http.MethodPost, "/admin/emails/"+old.ID+"/resend", adminToken, nil); status != http.StatusConflict {
		t.Errorf("resend of an announcement to an unsubscribed address: %d %s, want 409", status, body)
	}

	// Transactional emails still come, without List-Unsubscribe.
	uma.Version, uma.Reason = 2, "links_rotated"
	h.publish(events.RegistrationUpdated, uma)
	links := jobTo(t, h.waitJobs(8), kindLinks, uma.ID)
	if links.To != uma.Email || len(links.Headers) != 0 {
		t.Errorf("links email after unsubscribing: to %s, headers %v", links.To, links.Headers)
	}
}

func TestUnsubscribeRefusesForeignTokens(t *testing.T) {
	h := start(t)
	const eventID = "evt-01JTOKENS"
	people := h.enrol(eventID, map[string]person{"tom": {events.StatusConfirmed, events.ModeOnline}})
	tom := people["tom"]
	h.waitJobs(1)
	h.announce(eventID, "Hello", "Hello.", audienceAll, "")
	link := unsubscribeURL(t, jobTo(t, h.waitJobs(2), kindAnnouncement, tom.ID))
	token := strings.TrimPrefix(link, "http://localhost:8080/u/")

	signer, err := links.NewSigner([]byte(h.cfg.LinkKey))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := links.NewSigner([]byte(strings.Repeat("o", 32)))
	flip := func(s string) string {
		last := s[len(s)-1]
		if last == 'A' {
			return s[:len(s)-1] + "B"
		}
		return s[:len(s)-1] + "A"
	}
	for name, bad := range map[string]string{
		"tampered mac":     flip(token),
		"other id":         strings.Replace(token, tom.ID, "01JSOMEONEELSE", 1),
		"manage token":     signer.Token(links.Manage, tom.ID, 1),
		"join token":       signer.Token(links.Join, tom.ID, 1),
		"other key":        otherKey.Token(unsubscribePurpose, tom.ID, unsubscribeTokenVersion),
		"other version":    signer.Token(unsubscribePurpose, tom.ID, unsubscribeTokenVersion+1),
		"garbage":          "not-a-token",
		"truncated":        token[:len(token)/2],
		"registration id":  tom.ID,
		"dots only":        "..",
		"encoded dot path": "%2e%2e",
	} {
		t.Run(name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				status, _, body := h.do(method, "/u/"+bad, "", []byte("List-Unsubscribe=One-Click"),
					"Content-Type", "application/x-www-form-urlencoded")
				if status != http.StatusNotFound || strings.Contains(string(body), "<form") {
					t.Errorf("%s: %d, want 404 without a form", method, status)
				}
			}
		})
	}
	// None of them unsubscribed Tom.
	if got := h.announce(eventID, "Again", "Again.", audienceAll, ""); got.Recipients != 1 {
		t.Errorf("after foreign tokens: %d recipients, want 1", got.Recipients)
	}
}
