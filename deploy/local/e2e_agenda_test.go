package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/testkit"
)

var joinLink = regexp.MustCompile(`https?://[^\s"<>]+/j/[A-Za-z0-9_.-]+`)

// TestAgendaReleaseOpensSessionJoinLinks: an organiser publishes the
// agenda of an event under way; the release reaches the registration
// service, and an online participant's personal link opens the session
// that is on now, at its own meeting, and not the one later in the day.
// The public views of the release answer through the one listener.
func TestAgendaReleaseOpensSessionJoinLinks(t *testing.T) {
	e := startStack(t)
	now := time.Now()
	eventID := e.postEvent(map[string]any{
		"slug": "under-way", "title": "OSCE roundtable", "timezone": "Europe/Vienna",
		"starts_at": now.Add(-time.Hour).Format(time.RFC3339),
		"ends_at":   now.Add(6 * time.Hour).Format(time.RFC3339),
		"online":    map[string]any{"join_url": "https://meet.example.org/osce", "opens_minutes_before": 10},
		"capacity":  map[string]any{"in_person": 50, "online": 150},
	})
	e.register("under-way", "ada@example.org", "online")
	link := joinLink.FindString(e.smtp.WaitFor(t, 1, 20*time.Second)[0].Text)
	if link == "" {
		t.Fatal("no join link in the confirmation")
	}
	path := strings.TrimPrefix(link, e.stack.URL)

	session := func(title string, from, to time.Duration, meeting string) string {
		t.Helper()
		var id string
		testkit.Eventually(t, 10*time.Second, func() error { // the agenda learns the event through NATS
			r := e.admin.Do(t, "POST", "/admin/events/"+eventID+"/sessions", map[string]any{
				"title": title, "format": "hybrid", "room": "Neuer Saal", "join_url": meeting,
				"starts_at": now.Add(from).Format(time.RFC3339), "ends_at": now.Add(to).Format(time.RFC3339),
			})
			if r.Status != http.StatusCreated {
				return fmt.Errorf("create session: %d %s", r.Status, r.Body)
			}
			var s struct{ ID string }
			r.JSON(t, &s)
			id = s.ID
			return nil
		})
		return id
	}
	now1 := session("Panel I: trafficking in human beings", -10*time.Minute, 50*time.Minute, "https://meet.example.org/panel-1")
	later := session("Panel II: countering terrorism", 3*time.Hour, 4*time.Hour, "https://meet.example.org/panel-2")
	if r := e.admin.Do(t, "POST", "/admin/events/"+eventID+"/agenda/releases", map[string]any{"note": "Programme"}); r.Status != http.StatusCreated {
		t.Fatalf("publish: %d %s", r.Status, r.Body)
	}

	testkit.Eventually(t, 10*time.Second, func() error {
		r := e.pub.Do(t, "GET", path+"?session="+now1, nil)
		if r.Status != http.StatusFound || r.Header.Get("Location") != "https://meet.example.org/panel-1" {
			return fmt.Errorf("session on now: %d %s", r.Status, r.Header.Get("Location"))
		}
		return nil
	})
	if r := e.pub.Do(t, "GET", path+"?session="+later, nil); r.Status != http.StatusForbidden || r.Header.Get("Location") != "" {
		t.Errorf("session later today: %d %s, want a 403 page", r.Status, r.Header.Get("Location"))
	}
	if r := e.pub.Do(t, "GET", path, nil); r.Status != http.StatusFound || r.Header.Get("Location") != "https://meet.example.org/osce" {
		t.Errorf("the event's link: %d %s", r.Status, r.Header.Get("Location"))
	}
	for _, p := range []string{"/e/under-way/agenda", "/api/events/under-way/agenda", "/api/events/under-way/agenda.ics",
		"/api/events/under-way/agenda/changes", "/api/events/under-way/agenda/releases/1"} {
		r := e.pub.Do(t, "GET", p, nil)
		if r.Status != http.StatusOK || strings.Contains(string(r.Body), "panel-1") {
			t.Errorf("%s: %d (or it shows a meeting link)", p, r.Status)
		}
	}
}
