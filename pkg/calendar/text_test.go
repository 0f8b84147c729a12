package calendar

import (
	"slices"
	"strings"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"

	"github.com/plenaryhq/plenary/pkg/events"
)

// Organisers' text reaches every subscriber's calendar: it must come back as
// written (bar control characters), fold without breaking characters, and
// never start a property of its own.
func TestFeedTextIsEscapedFoldedAndCannotInject(t *testing.T) {
	longTitle := strings.Repeat("日本語のセッション🎉", 12) // 372 octets, no space to fold at
	longAbstract := strings.Repeat("Ça va, Ελλάδα; 東京 🎉 \\ ", 20) + "\r\nzweite Zeile"
	tests := []struct {
		name     string
		set      func(r *events.Release, s *events.Session)
		uid      string                // default "s@plenary"
		prop     ics.ComponentProperty // of the VEVENT, or X-WR-CALNAME of the calendar
		want     string                // parsed back; "" for no such property
		wantLine string                // the unfolded content line, when given
	}{
		{"CRLF in a title", func(_ *events.Release, s *events.Session) { s.Title = "Keynote\r\nATTENDEE:mailto:x@y" },
			"", ics.ComponentPropertySummary, "Keynote ATTENDEE:mailto:x@y", "SUMMARY:Keynote ATTENDEE:mailto:x@y"},
		{"bare CR in a title", func(_ *events.Release, s *events.Session) { s.Title = "Keynote\rORGANIZER:mailto:x@y" },
			"", ics.ComponentPropertySummary, "Keynote ORGANIZER:mailto:x@y", ""},
		{"LF and a parameter in a title", func(_ *events.Release, s *events.Session) { s.Title = "Keynote\nATTENDEE;CN=X:mailto:x@y" },
			"", ics.ComponentPropertySummary, "Keynote ATTENDEE;CN=X:mailto:x@y", `SUMMARY:Keynote ATTENDEE\;CN=X:mailto:x@y`},
		{"unicode line breaks in a title", func(_ *events.Release, s *events.Session) { s.Title = "A\u2028B\u0085C\tD" },
			"", ics.ComponentPropertySummary, "A B C D", ""},
		{"commas, semicolons, backslashes, quotes", func(_ *events.Release, s *events.Session) { s.Title = `Q&A: a, b; c\d "e"` },
			"", ics.ComponentPropertySummary, `Q&A: a, b; c\d "e"`, `SUMMARY:Q&A: a\, b\; c\\d "e"`},
		{"a backslash before n stays text", func(_ *events.Release, s *events.Session) { s.Title = `C:\new` },
			"", ics.ComponentPropertySummary, `C:\new`, `SUMMARY:C:\\new`},
		{"control characters dropped", func(_ *events.Release, s *events.Session) { s.Title = "A\x00B\x07C\x1b[1mD\u009bE\x7fF" },
			"", ics.ComponentPropertySummary, "ABC[1mDEF", ""},
		{"invalid UTF-8 replaced", func(_ *events.Release, s *events.Session) { s.Title = "caf\xe9 au lait" },
			"", ics.ComponentPropertySummary, "caf\uFFFD au lait", ""},
		{"long unicode title folds", func(_ *events.Release, s *events.Session) { s.Title = longTitle },
			"", ics.ComponentPropertySummary, longTitle, "SUMMARY:" + longTitle},
		{"multi-line abstract", func(_ *events.Release, s *events.Session) { s.Abstract = "One,\r\ntwo;\rthree\\" },
			"", ics.ComponentPropertyDescription, "One,\ntwo;\nthree\\", `DESCRIPTION:One\,\ntwo\;\nthree\\`},
		{"long unicode abstract folds", func(_ *events.Release, s *events.Session) { s.Abstract = longAbstract },
			"", ics.ComponentPropertyDescription, strings.ReplaceAll(longAbstract, "\r\n", "\n"),
			"DESCRIPTION:" + escapeText(strings.ReplaceAll(longAbstract, "\r\n", "\n"))},
		{"CRLF in a room", func(_ *events.Release, s *events.Session) { s.Room = "Hall\r\nATTENDEE:mailto:x@y" },
			"", ics.ComponentPropertyLocation, "Hall ATTENDEE:mailto:x@y", ""},
		{"CRLF in a speaker", func(_ *events.Release, s *events.Session) {
			s.Speakers = []events.Speaker{{Name: "Ana\r\nATTENDEE:mailto:x@y", Affiliation: "EU;\nX"}}
		}, "", ics.ComponentPropertyDescription, "Speakers: Ana ATTENDEE:mailto:x@y (EU; X)", ""},
		{"CRLF in a session id", func(_ *events.Release, s *events.Session) { s.ID = "s\r\nATTENDEE:mailto:x@y" },
			"s ATTENDEE:mailto:x@y@plenary", ics.ComponentPropertyUrl, "https://agenda.example.org/e/summit#s-s%0D%0AATTENDEE:mailto:x@y", ""},
		{"CRLF in the calendar name", func(r *events.Release, _ *events.Session) { r.Title = "Summit\r\nMETHOD:REQUEST" },
			"", "X-WR-CALNAME", "Summit METHOD:REQUEST", ""},
		{"CRLF in a join URL: left out", func(_ *events.Release, s *events.Session) {
			s.JoinURL = "https://meet.example.org/j\r\nATTENDEE:mailto:x@y"
		}, "", "CONFERENCE", "", ""},
		{"not an http join URL: left out", func(_ *events.Release, s *events.Session) { s.JoinURL = "javascript:alert(1)" },
			"", "CONFERENCE", "", ""},
		{"a join URL with commas and semicolons", func(_ *events.Release, s *events.Session) {
			s.JoinURL = "https://meet.example.org/j?a=1,2;b=3"
		}, "", "CONFERENCE", "https://meet.example.org/j?a=1,2;b=3", "CONFERENCE;VALUE=URI:https://meet.example.org/j?a=1,2;b=3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rel := release("Europe/Vienna", session("s", "2027-11-09T08:00:00Z", "2027-11-09T09:00:00Z"))
			tc.set(rel, &rel.Sessions[0])
			feed, cal := render(t, rel, Options{PageURL: "https://agenda.example.org/e/summit", JoinURLs: true})
			uid := tc.uid
			if uid == "" {
				uid = "s@plenary"
			}
			ev := event(t, cal, uid)
			got := value(&ev.ComponentBase, tc.prop)
			if tc.prop == "X-WR-CALNAME" {
				got = calProp(cal, ics.PropertyXWRCalName)
			}
			if got != tc.want {
				t.Errorf("%s reads back as %q, want %q", tc.prop, got, tc.want)
			}
			lines := unfold(feed)
			if tc.wantLine != "" && !slices.Contains(lines, tc.wantLine) {
				t.Errorf("no content line %q in\n%s", tc.wantLine, strings.Join(lines, "\n"))
			}
			for _, line := range lines {
				for _, name := range []string{"ATTENDEE", "ORGANIZER", "METHOD:REQUEST"} {
					if strings.HasPrefix(line, name) {
						t.Errorf("injected content line %q", line)
					}
				}
			}
			if ev.HasProperty(ics.ComponentPropertyAttendee) || ev.HasProperty(ics.ComponentPropertyOrganizer) {
				t.Errorf("the VEVENT has an ATTENDEE or ORGANIZER")
			}
			if len(cal.Events()) != 1 || calProp(cal, ics.PropertyMethod) != "PUBLISH" {
				t.Errorf("%d VEVENTs, METHOD %s; want 1, PUBLISH", len(cal.Events()), calProp(cal, ics.PropertyMethod))
			}
		})
	}
}

// The long lines above must actually have been folded (and render checked
// each physical line): a feed of short lines would prove nothing.
func TestFeedFoldsLongLines(t *testing.T) {
	s := session("s", "2027-11-09T08:00:00Z", "2027-11-09T09:00:00Z")
	s.Title = strings.Repeat("🎉", 40) // 160 octets
	feed, _ := render(t, release("Asia/Tokyo", s), Options{})
	var continued int
	for _, line := range strings.Split(string(feed), "\r\n") {
		if strings.HasPrefix(line, " ") {
			continued++
		}
	}
	if continued < 2 {
		t.Errorf("%d continuation lines for a 168-octet SUMMARY, want 2 or more:\n%s", continued, feed)
	}
}

func TestFeedRejects(t *testing.T) {
	ok := release("Europe/Vienna", session("s", "2027-11-09T08:00:00Z", "2027-11-09T09:00:00Z"))
	unpublished := release("Europe/Vienna")
	unpublished.PublishedAt = time.Time{}
	tests := []struct {
		name string
		rel  *events.Release
		opt  Options
	}{
		{"no release", nil, Options{}},
		{"no publication time", unpublished, Options{}},
		{"a page URL that is not http", ok, Options{PageURL: "javascript:alert(1)"}},
		{"a page URL with a line break", ok, Options{PageURL: "https://agenda.example.org/\r\nX:y"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if feed, err := Feed(tc.rel, tc.opt); err == nil {
				t.Errorf("Feed succeeded:\n%s", feed)
			}
		})
	}
}

// escapeText is RFC 5545 3.3.11 TEXT escaping, written out independently of
// golang-ical.
func escapeText(s string) string {
	return strings.NewReplacer(`\`, `\\`, ";", `\;`, ",", `\,`, "\n", `\n`).Replace(s)
}
