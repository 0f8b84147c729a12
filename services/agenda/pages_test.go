package agenda

import (
	"html"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// page fetches path and fails the test unless it answers status with HTML.
func (h *harness) page(t *testing.T, path string, status int, headers ...string) string {
	t.Helper()
	r := h.public.Do(t, "GET", path, nil, headers...)
	if r.Status != status {
		t.Fatalf("GET %s: %d, want %d: %s", path, r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET %s: Content-Type %q, want HTML", path, ct)
	}
	if !slices.Contains(strings.Split(strings.ReplaceAll(r.Header.Get("Vary"), " ", ""), ","), "Accept-Language") {
		t.Errorf("GET %s: Vary %q lacks Accept-Language", path, r.Header.Get("Vary"))
	}
	return string(r.Body)
}

// contains fails the test for each want missing from the page.
func contains(t *testing.T, what, page string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(page, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

// entry is the HTML of session id's entry on the page.
func entry(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `<article id="s-`+id+`"`)
	if i < 0 {
		t.Fatalf("no entry for session %s", id)
	}
	j := strings.Index(page[i:], "</article>")
	return page[i : i+j]
}

var dayHeading = regexp.MustCompile(`<h2 class="day" id="[^"]+">([^<]+)</h2>`)

// dayOf is the day heading an entry is under, and all headings in order.
func dayOf(t *testing.T, page, id string) (string, []string) {
	t.Helper()
	at := strings.Index(page, `<article id="s-`+id+`"`)
	var day string
	var days []string
	for _, m := range dayHeading.FindAllStringSubmatchIndex(page, -1) {
		name := page[m[2]:m[3]]
		days = append(days, name)
		if m[0] < at {
			day = name
		}
	}
	return day, days
}

// link is the unescaped address of the first link whose text starts with text.
func link(t *testing.T, page, text string) string {
	t.Helper()
	m := regexp.MustCompile(`<a href="([^"]*)"[^>]*>` + regexp.QuoteMeta(text)).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no link %q", text)
	}
	return html.UnescapeString(m[1])
}

func TestPageBeforePublishingAndUnknownEvent(t *testing.T) {
	h := start(t)
	ev := roundtable("ev1")
	ev.Locales = []string{"de", "en"}
	h.event(t, ev)
	id := h.session(t, "ev1", panel("Budget panel", 11, "Neuer Saal"))
	path := "/e/" + ev.Slug + "/agenda"

	p := h.page(t, path, http.StatusNotFound, "Accept-Language", "en-GB")
	contains(t, "unpublished, en", p, `<html lang="en">`, "The agenda is not published yet",
		"The organisers of Roundtable ev1 have not published", `href="/e/roundtable-ev1"`)
	if strings.Contains(p, "Budget panel") {
		t.Error("the draft shows before it is published")
	}
	// Russian is not among the event's languages: its first one, German.
	p = h.page(t, path+"?lang=ru", http.StatusNotFound, "Accept-Language", "ru")
	contains(t, "unpublished, ru", p, `<html lang="de">`, "Das Programm ist noch nicht veröffentlicht",
		`hreflang="en"`)
	if strings.Contains(p, `hreflang="fr"`) || strings.Contains(p, `hreflang="ru"`) {
		t.Error("the language switch offers languages the event does not")
	}

	p = h.page(t, "/e/nope/agenda", http.StatusNotFound)
	contains(t, "unknown, en", p, "This page does not exist.", "There is no event at this address.")
	p = h.page(t, "/e/nope/agenda", http.StatusNotFound, "Accept-Language", "fr-CH, en;q=0.5")
	contains(t, "unknown, fr", p, `<html lang="fr">`, "Cette page n’existe pas.", "Aucun événement ne se trouve à cette adresse.")
	p = h.page(t, "/e/nope/agenda?lang=ru", http.StatusNotFound)
	contains(t, "unknown, ru", p, `<html lang="ru">`, "По этому адресу нет мероприятия.")

	h.publish(t, "ev1", "")
	p = h.page(t, path, http.StatusOK)
	contains(t, "published", p, "Budget panel", `id="s-`+id+`"`)
}

func TestPageAgenda(t *testing.T) {
	h := start(t)
	ev := roundtable("ev1")
	h.event(t, ev)
	path := "/e/" + ev.Slug + "/agenda"

	opening := panel("Opening <script>alert(1)</script>", 9, "Großer Saal")
	opening["join_url"] = "https://meet.example.org/opening-secret"
	opening["track"] = "Plenary"
	opening["abstract"] = strings.Repeat("Why hybrid plenaries work. ", 15)
	workshop := panel("Workshop on data", 14, "Neuer Saal")
	workshop["format"] = "in_person"
	closing := map[string]any{"title": "Closing", "starts_at": at(1, 16, 30), "ends_at": at(1, 17, 30),
		"room": "Großer Saal", "join_url": "https://meet.example.org/closing-secret"}
	side := map[string]any{"title": "Side event", "starts_at": at(1, 10, 0), "ends_at": at(1, 11, 0), "format": "online"}
	ids := map[string]string{
		"opening":  h.session(t, "ev1", opening),
		"budget":   h.session(t, "ev1", panel("Budget panel", 11, "Neuer Saal")),
		"workshop": h.session(t, "ev1", workshop),
		"side":     h.session(t, "ev1", side),
		"closing":  h.session(t, "ev1", closing),
	}
	h.publish(t, "ev1", "First agenda")
	// The draft does hold meeting URLs, so their absence below means something.
	if r := h.admin.Do(t, "GET", "/admin/events/ev1/agenda/draft", nil); !strings.Contains(string(r.Body), "meet.example.org") {
		t.Fatalf("the draft lacks the meeting URLs: %s", r.Body)
	}
	noMeetingURL := func(t *testing.T, p string) {
		t.Helper()
		if strings.Contains(p, "meet.example.org") {
			t.Error("a meeting URL is on the public page")
		}
	}

	t.Run("English, in the event's zone", func(t *testing.T) {
		r := h.public.Do(t, "GET", path, nil)
		if got := r.Header.Get("Cache-Control"); got != "public, max-age=60" {
			t.Errorf("Cache-Control = %q", got)
		}
		p := h.page(t, path, http.StatusOK)
		contains(t, "page", p, `<html lang="en">`, "<h1>Agenda – Roundtable ev1</h1>",
			"Version 1, published ", "Note from the organisers: First agenda",
			"Times are in Europe/Vienna, the event’s time zone.", `<select id="tz" name="tz"`, "<option>Asia/Tokyo</option>",
			`href="webcal://plenary.example.org/api/events/roundtable-ev1/agenda.ics"`,
			"https://plenary.example.org/api/events/roundtable-ev1/agenda.ics",
			`href="/api/events/roundtable-ev1/agenda.ics"`, `href="/api/events/roundtable-ev1/agenda/changes"`,
			`href="/e/roundtable-ev1"`)
		day, days := dayOf(t, p, ids["closing"])
		if want := []string{"Tuesday 9 November 2027", "Wednesday 10 November 2027"}; !slices.Equal(days, want) {
			t.Errorf("days %q, want %q", days, want)
		}
		if day != "Wednesday 10 November 2027" {
			t.Errorf("Closing is under %q", day)
		}
		o := entry(t, p, ids["opening"])
		contains(t, "Opening", o, "09:00–10:00 CET", "Opening &lt;script&gt;alert(1)&lt;/script&gt;",
			"In person and online", "Room: Großer Saal", "Track: Plenary", "Speaker of Opening", "(OSCE)",
			"<details><summary>Abstract</summary>", "Why hybrid plenaries work.")
		if strings.Contains(p, "<script>alert") {
			t.Error("organiser text is not escaped")
		}
		contains(t, "Workshop", entry(t, p, ids["workshop"]), "14:00–15:00 CET", `<p class="muted">In person · Room: Neuer Saal</p>`)
		contains(t, "Side event", entry(t, p, ids["side"]), "10:00–11:00 CET", `<p class="muted">Online</p>`)
		if strings.Contains(p, `class="mark`) {
			t.Error("the first release marks sessions")
		}
		noMeetingURL(t, p)
	})

	t.Run("every language has its own day names", func(t *testing.T) {
		for lang, want := range map[string][]string{
			"en": {"Tuesday 9 November 2027", "Wednesday 10 November 2027", "Agenda – ", "In person and online"},
			"fr": {"mardi 9 novembre 2027", "mercredi 10 novembre 2027", "Programme – ", "En présentiel et en ligne"},
			"de": {"Dienstag, 9. November 2027", "Mittwoch, 10. November 2027", "Programm – ", "Vor Ort und online"},
			"it": {"martedì 9 novembre 2027", "mercoledì 10 novembre 2027", "Programma – ", "In presenza e online"},
			"ru": {"вторник, 9 ноября 2027", "среда, 10 ноября 2027", "Программа — ", "Очно и онлайн"},
			"es": {"martes, 9 de noviembre de 2027", "miércoles, 10 de noviembre de 2027", "Programa – ", "Presencial y en línea"},
		} {
			p := h.page(t, path+"?lang="+lang, http.StatusOK)
			_, days := dayOf(t, p, ids["opening"])
			if !slices.Equal(days, want[:2]) {
				t.Errorf("%s: days %q, want %q", lang, days, want[:2])
			}
			contains(t, lang, p, append(want[2:], `<html lang="`+lang+`">`)...)
			if lang != "en" && strings.Contains(p, "Subscribe") {
				t.Errorf("%s: English text on the page", lang)
			}
			noMeetingURL(t, p)
		}
		p := h.page(t, path, http.StatusOK, "Accept-Language", "ru-RU,ru;q=0.9,en;q=0.5")
		contains(t, "Accept-Language ru", p, `<html lang="ru">`, "Время указано по часовому поясу мероприятия: Europe/Vienna.",
			"3 сессии", "Зал: Großer Saal", "Подписаться в приложении-календаре")
	})

	t.Run("in Tokyo", func(t *testing.T) {
		p := h.page(t, path+"?tz=Asia/Tokyo&lang=en", http.StatusOK)
		contains(t, "Tokyo", p, "Times are in Asia/Tokyo, the time zone you chose.", "<option selected>Asia/Tokyo</option>")
		contains(t, "Opening", entry(t, p, ids["opening"]), "17:00–18:00 JST")
		day, days := dayOf(t, p, ids["closing"])
		want := []string{"Tuesday 9 November 2027", "Wednesday 10 November 2027", "Thursday 11 November 2027"}
		if !slices.Equal(days, want) || day != want[2] {
			t.Errorf("in Tokyo Closing is under %q of %q, want %q of %q", day, days, want[2], want)
		}
		contains(t, "Closing", entry(t, p, ids["closing"]), "00:30–01:30 JST")

		// The language switch keeps the zone, the zone link the language.
		ru := h.page(t, path+link(t, p, "Русский"), http.StatusOK)
		contains(t, "Russian in Tokyo", ru, `<html lang="ru">`, "17:00–18:00 JST", "четверг, 11 ноября 2027",
			"Время указано по выбранному вами часовому поясу: Asia/Tokyo.")
		back := h.page(t, link(t, p, "Show times in the event’s time zone (Europe/Vienna)"), http.StatusOK)
		contains(t, "back in Vienna", back, `<html lang="en">`, "Times are in Europe/Vienna, the event’s time zone.")
		contains(t, "Opening back in Vienna", entry(t, back, ids["opening"]), "09:00–10:00 CET")
	})

	t.Run("an unknown zone falls back to the event's", func(t *testing.T) {
		for _, tz := range []string{"Mars/Olympus", "Local", "../../etc/passwd"} {
			p := h.page(t, path+"?tz="+tz, http.StatusOK)
			contains(t, tz, p, "We do not know that time zone, so times are in Europe/Vienna", "09:00–10:00 CET")
		}
	})

	// A second release moves one session, relocates one, cancels one,
	// changes one's meeting URL and adds one.
	patch := func(id string, body map[string]any) {
		t.Helper()
		if r := h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+id, body); r.Status != http.StatusOK {
			t.Fatalf("patch: %d %s", r.Status, r.Body)
		}
	}
	patch(ids["budget"], map[string]any{"starts_at": at(0, 12, 0), "ends_at": at(0, 13, 0)})
	patch(ids["workshop"], map[string]any{"room": "Kleiner Saal"})
	patch(ids["opening"], map[string]any{"join_url": "https://meet.example.org/opening-new-secret"})
	if r := h.admin.Do(t, "DELETE", "/admin/events/ev1/sessions/"+ids["closing"], nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	ids["late"] = h.session(t, "ev1", map[string]any{"title": "Late addition", "starts_at": at(1, 14, 0), "ends_at": at(1, 15, 0)})
	h.publish(t, "ev1", "Budget panel moved")

	t.Run("marks of the second release", func(t *testing.T) {
		p := h.page(t, path, http.StatusOK)
		contains(t, "page", p, "Version 2, published ", "Changes since version 1: 5 sessions",
			`<a href="#s-`+ids["budget"]+`">Budget panel</a>`)
		contains(t, "moved", entry(t, p, ids["budget"]), `class="changed"`, ">Changed</span>",
			"time (was 11:00–12:00 CET)", "12:00–13:00 CET")
		contains(t, "relocated", entry(t, p, ids["workshop"]), ">Changed</span>", "room (was Neuer Saal)", "Room: Kleiner Saal")
		contains(t, "new link", entry(t, p, ids["opening"]), ">Changed</span> online link</p>")
		contains(t, "cancelled", entry(t, p, ids["closing"]), `class="cancelled"`, ">Cancelled</span>",
			"<s>Closing</s>", "<s><time")
		contains(t, "added", entry(t, p, ids["late"]), `class="new"`, ">New</span>")
		if side := entry(t, p, ids["side"]); strings.Contains(side, `class="mark`) || !strings.HasPrefix(side, `<article id="s-`+ids["side"]+`" aria-labelledby`) {
			t.Errorf("an unchanged session is marked: %s", side)
		}
		if strings.Contains(p, "<script>alert") {
			t.Error("organiser text is not escaped in the list of changes")
		}
		noMeetingURL(t, p)

		ru := h.page(t, path+"?lang=ru", http.StatusOK)
		contains(t, "ru", ru, "Изменения после версии 1: 5 сессий", ">Изменена</span>", "время (было: 11:00–12:00 CET)",
			"зал (было: Neuer Saal)", ">Отменена</span>", ">Новая</span>", "ссылка для онлайн-участия")
		noMeetingURL(t, ru)

		tokyo := h.page(t, path+"?tz=Asia/Tokyo", http.StatusOK)
		contains(t, "moved, Tokyo", entry(t, tokyo, ids["budget"]), "time (was 19:00–20:00 JST)", "20:00–21:00 JST")
	})
}
