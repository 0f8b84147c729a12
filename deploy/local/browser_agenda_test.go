package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/plenaryhq/plenary/pkg/testkit"
)

// TestBrowserAgendaPage walks a visitor in Paris through the published
// agenda in Chromium: the zone switch preselects the browser's zone, shows
// the times in another zone, keeps it across the language switch, and the
// marks of the latest release point at the sessions they are about.
func TestBrowserAgendaPage(t *testing.T) {
	b := startBrowser(t)
	e := startStack(t)
	vienna, err := time.LoadLocation("Europe/Vienna")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(time.Now().Year()+1, time.November, 9, 9, 0, 0, 0, vienna)
	eventID := e.postEvent(map[string]any{
		"slug": "agenda-walk", "title": "OSCE roundtable", "timezone": "Europe/Vienna",
		"starts_at": day.Format(time.RFC3339), "ends_at": day.Add(32 * time.Hour).Format(time.RFC3339),
		"capacity": map[string]any{"in_person": 60, "online": 150}, "locales": []string{"en", "ru"},
	})
	add := func(title string, hour int, room string) string {
		var id string
		testkit.Eventually(t, 10*time.Second, func() error {
			r := e.admin.Do(t, "POST", "/admin/events/"+eventID+"/sessions", map[string]any{
				"title": title, "room": room, "format": "hybrid", "join_url": "https://meet.example.org/" + room,
				"starts_at": day.Add(time.Duration(hour-9) * time.Hour).Format(time.RFC3339),
				"ends_at":   day.Add(time.Duration(hour-8) * time.Hour).Format(time.RFC3339),
			})
			if r.Status != http.StatusCreated {
				return fmt.Errorf("%d %s", r.Status, r.Body)
			}
			var s struct{ ID string }
			r.JSON(t, &s)
			id = s.ID
			return nil
		})
		return id
	}
	publish := func() {
		if r := e.admin.Do(t, "POST", "/admin/events/"+eventID+"/agenda/releases", map[string]any{"note": "update"}); r.Status != http.StatusCreated {
			t.Fatalf("publish: %d %s", r.Status, r.Body)
		}
	}
	add("Panel I: trafficking in human beings", 10, "neuer-saal")
	moved := add("Panel II: countering terrorism", 14, "neuer-saal")
	publish()
	e.admin.Do(t, "PATCH", "/admin/events/"+eventID+"/sessions/"+moved, map[string]any{"room": "ratsaal"})
	publish()

	page := e.stack.URL + "/e/agenda-walk/agenda"
	b.open(page)
	b.wantLang("en")
	b.labelled()
	if got := eval[string](b, `document.getElementById("tz").value`); got != "Europe/Paris" {
		t.Fatalf("the zone select shows %q, want the browser's Europe/Paris", got)
	}
	if html := eval[string](b, `document.documentElement.outerHTML`); strings.Contains(html, "meet.example.org") {
		t.Fatal("the page shows a meeting link")
	}
	first := func() string { return b.text(`article h3`) + " " + b.text(`article .when`) }
	if got := first(); !strings.Contains(got, "10:00") {
		t.Fatalf("first session %q, want it at 10:00 Vienna time", got)
	}
	// The change list links to the relocated session, which says so.
	b.step("follow the change mark", chromedp.Click(chromedp.CSS(`a[href="#s-`+moved+`"]`)))
	if !strings.HasSuffix(b.url(), "#s-"+moved) || !strings.Contains(b.text(`#s-`+moved), "neuer-saal") {
		t.Fatalf("at %s the session says %q", b.url(), b.text(`#s-`+moved))
	}

	// Another zone, through the form, then the language switch keeps it.
	b.step("pick Tokyo", chromedp.SetValue(chromedp.ID("tz"), "Asia/Tokyo"))
	if status := b.load("show times", chromedp.Click(chromedp.CSS(`section.zone button[type=submit]`))); status != http.StatusOK {
		t.Fatalf("zone form: %d", status)
	}
	if got := first(); !strings.Contains(got, "18:00") {
		t.Fatalf("in Tokyo the first session shows %q, want 18:00", got)
	}
	if status := b.load("switch to Russian", chromedp.Click(chromedp.CSS(`nav.lang a[hreflang=ru]`))); status != http.StatusOK {
		t.Fatalf("language switch: %d", status)
	}
	b.wantLang("ru")
	if got := first(); !strings.Contains(b.url(), "tz=Asia") || !strings.Contains(got, "18:00") {
		t.Fatalf("after the language switch %s shows %q", b.url(), got)
	}
	b.labelled()
}
