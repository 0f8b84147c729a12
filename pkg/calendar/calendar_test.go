package calendar

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the tests must not depend on the machine's zoneinfo

	ics "github.com/arran4/golang-ical"

	"github.com/plenaryhq/plenary/pkg/events"
)

// Sessions around Vienna's 2027 clock changes (03-28 02:00→03:00 and 10-31
// 03:00→02:00): the feed must name the same instants, read through its own
// VTIMEZONE, and a viewer in Tokyo must see the expected wall clock.
func TestFeedTimesRoundTripAcrossDaylightSaving(t *testing.T) {
	tests := []struct {
		name, start, end   string // instants
		wantStart, wantEnd string // as written
		tokyo              string // start–end for a viewer in Tokyo
	}{
		{"winter", "2027-01-15T08:00:00Z", "2027-01-15T09:00:00Z",
			"TZID=Europe/Vienna:20270115T090000", "TZID=Europe/Vienna:20270115T100000", "2027-01-15 17:00–18:00 JST"},
		{"before spring forward", "2027-03-27T23:30:00Z", "2027-03-28T00:30:00Z",
			"TZID=Europe/Vienna:20270328T003000", "TZID=Europe/Vienna:20270328T013000", "2027-03-28 08:30–09:30 JST"},
		{"across spring forward", "2027-03-28T00:30:00Z", "2027-03-28T01:30:00Z",
			"TZID=Europe/Vienna:20270328T013000", "TZID=Europe/Vienna:20270328T033000", "2027-03-28 09:30–10:30 JST"},
		{"after spring forward", "2027-03-28T01:00:00Z", "2027-03-28T02:00:00Z",
			"TZID=Europe/Vienna:20270328T030000", "TZID=Europe/Vienna:20270328T040000", "2027-03-28 10:00–11:00 JST"},
		{"summer", "2027-07-01T08:00:00Z", "2027-07-01T09:00:00Z",
			"TZID=Europe/Vienna:20270701T100000", "TZID=Europe/Vienna:20270701T110000", "2027-07-01 17:00–18:00 JST"},
		{"before fall back, ending as it starts", "2027-10-30T23:00:00Z", "2027-10-31T00:00:00Z",
			"TZID=Europe/Vienna:20271031T010000", "TZID=Europe/Vienna:20271031T020000", "2027-10-31 08:00–09:00 JST"},
		// 02:30 happens twice; RFC 5545 reads a local time as the first, so
		// the second can only be written in UTC.
		{"from the first 02:30 to the second", "2027-10-31T00:30:00Z", "2027-10-31T01:30:00Z",
			"TZID=Europe/Vienna:20271031T023000", "20271031T013000Z", "2027-10-31 09:30–10:30 JST"},
		{"starting in the repeated hour", "2027-10-31T01:15:00Z", "2027-10-31T02:15:00Z",
			"20271031T011500Z", "TZID=Europe/Vienna:20271031T031500", "2027-10-31 10:15–11:15 JST"},
		{"after fall back", "2027-10-31T02:00:00Z", "2027-10-31T03:00:00Z",
			"TZID=Europe/Vienna:20271031T030000", "TZID=Europe/Vienna:20271031T040000", "2027-10-31 11:00–12:00 JST"},
		{"across new year", "2027-12-31T22:00:00Z", "2028-01-01T00:00:00Z",
			"TZID=Europe/Vienna:20271231T230000", "TZID=Europe/Vienna:20280101T010000", "2028-01-01 07:00–09:00 JST"},
	}
	rel := release("Europe/Vienna")
	for _, tc := range tests {
		rel.Sessions = append(rel.Sessions, session(tc.name, tc.start, tc.end))
	}
	_, cal := render(t, rel, Options{})
	checkInstants(t, rel, cal, "plenary")

	tzs := zones(t, cal)
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := event(t, cal, tc.name+"@plenary")
			start, end := ev.GetProperty(ics.ComponentPropertyDtStart), ev.GetProperty(ics.ComponentPropertyDtEnd)
			if got := written(start); got != tc.wantStart {
				t.Errorf("DTSTART %s, want %s", got, tc.wantStart)
			}
			if got := written(end); got != tc.wantEnd {
				t.Errorf("DTEND %s, want %s", got, tc.wantEnd)
			}
			from, to := resolve(t, tzs, start).In(tokyo), resolve(t, tzs, end).In(tokyo)
			if got := from.Format("2006-01-02 15:04") + "–" + to.Format("15:04 MST"); got != tc.tokyo {
				t.Errorf("in Tokyo %s, want %s", got, tc.tokyo)
			}
		})
	}
}

// The VTIMEZONE is one yearly rule per kind of observance when the zone's
// onsets follow such rules (as Outlook needs), one observance per onset when
// they do not; zones that are UTC or unknown get UTC times and none.
func TestFeedTimeZones(t *testing.T) {
	nov9 := []events.Session{session("a", "2027-11-09T08:00:00Z", "2027-11-09T09:00:00Z")}
	tests := []struct {
		zone     string
		sessions []events.Session
		wantWR   string   // X-WR-TIMEZONE
		want     []string // the observances, or (explicit) nil
		explicit bool     // one observance per onset, no RRULE
	}{
		{"Europe/Vienna", []events.Session{nov9[0], session("b", "2028-06-01T08:00:00Z", "2028-06-01T09:00:00Z")},
			"Europe/Vienna", []string{
				"DAYLIGHT 20260329T020000 +0100 +0200 CEST FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
				"STANDARD 20261025T030000 +0200 +0100 CET FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
			}, false},
		{"America/New_York", nov9, "America/New_York", []string{
			"DAYLIGHT 20260308T020000 -0500 -0400 EDT FREQ=YEARLY;BYMONTH=3;BYDAY=2SU",
			"STANDARD 20261101T020000 -0400 -0500 EST FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
		}, false},
		{"Australia/Sydney", []events.Session{session("a", "2027-04-03T15:30:00Z", "2027-04-03T16:30:00Z")},
			"Australia/Sydney", []string{
				"STANDARD 20260405T030000 +1100 +1000 AEST FREQ=YEARLY;BYMONTH=4;BYDAY=1SU",
				"DAYLIGHT 20261004T020000 +1000 +1100 AEDT FREQ=YEARLY;BYMONTH=10;BYDAY=1SU",
			}, false},
		{"Asia/Tokyo", nov9, "Asia/Tokyo", []string{"STANDARD 20260101T000000 +0900 +0900 JST"}, false},
		{"Asia/Kolkata", nov9, "Asia/Kolkata", []string{"STANDARD 20260101T000000 +0530 +0530 IST"}, false},
		// Morocco leaves daylight saving for Ramadan: no yearly rule.
		{"Africa/Casablanca", []events.Session{session("a", "2027-02-01T08:00:00Z", "2027-02-01T09:00:00Z"),
			session("b", "2027-02-20T08:00:00Z", "2027-02-20T09:00:00Z"), session("c", "2027-03-20T08:00:00Z", "2027-03-20T09:00:00Z")},
			"Africa/Casablanca", nil, true},
		// Mexico left daylight saving in 2022: a yearly rule would bring it back.
		{"America/Mexico_City", []events.Session{session("a", "2023-06-01T15:00:00Z", "2023-06-01T16:00:00Z")},
			"America/Mexico_City", []string{
				"STANDARD 20220101T000000 -0600 -0600 CST",
				"DAYLIGHT 20220403T020000 -0600 -0500 CDT", "STANDARD 20221030T020000 -0500 -0600 CST",
			}, false},
		{"Europe/Vienna, sessions decades apart", []events.Session{nov9[0], session("b", "2047-11-09T08:00:00Z", "2047-11-09T09:00:00Z")},
			"UTC", nil, false},
		{"UTC", nov9, "UTC", nil, false},
		{"", nov9, "UTC", nil, false},
		{"Mars/Olympus_Mons", nov9, "UTC", nil, false},
		{"Europe/Vienna:X", nov9, "UTC", nil, false},
		{"Local", nov9, "UTC", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.zone, func(t *testing.T) {
			rel := release(strings.Split(tc.zone, ",")[0], tc.sessions...) // after a comma: what the case is about
			_, cal := render(t, rel, Options{})
			if got := calProp(cal, ics.PropertyXWRTimezone); got != tc.wantWR {
				t.Errorf("X-WR-TIMEZONE %q, want %q", got, tc.wantWR)
			}
			checkInstants(t, rel, cal, "plenary")
			tzs := zones(t, cal)
			var got []string
			for _, p := range tzs[tc.zone] {
				got = append(got, p.String())
			}
			switch {
			case tc.explicit:
				if len(tzs) != 1 || len(got) < 3 || strings.Contains(strings.Join(got, "\n"), "FREQ") {
					t.Errorf("%d VTIMEZONEs; %s observances, want one per onset:\n%s", len(tzs), tc.zone, strings.Join(got, "\n"))
				}
			case tc.want == nil:
				dtstart := event(t, cal, "a@plenary").GetProperty(ics.ComponentPropertyDtStart)
				if len(tzs) != 0 || !strings.HasSuffix(dtstart.Value, "Z") || len(dtstart.ICalParameters) > 0 {
					t.Errorf("%d VTIMEZONEs, DTSTART %s; want none and UTC", len(tzs), written(dtstart))
				}
			case len(tzs) != 1 || strings.Join(got, "\n") != strings.Join(tc.want, "\n"):
				t.Errorf("%d VTIMEZONEs; %s observances:\n%s\nwant:\n%s", len(tzs), tc.zone,
					strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestFeedCalendarAndEventProperties(t *testing.T) {
	s := session("k1", "2027-11-09T08:00:00Z", "2027-11-09T09:00:00Z")
	s.Title, s.Abstract, s.Track, s.Room, s.Format = "Opening keynote", "Why hybrid works.", "Main", "Festsaal", events.FormatHybrid
	s.Speakers = []events.Speaker{{Name: "Ana Pérez", Affiliation: "OSCE"}, {Name: "Ben Okafor"}}
	s.Sequence, s.ChangedAt = 3, time.Date(2027, 1, 20, 9, 30, 0, 0, time.FixedZone("CET", 3600))
	online := session("o1", "2027-11-09T10:00:00Z", "2027-11-09T11:00:00Z")
	online.Format, online.Room = events.FormatOnline, "Festsaal"
	noEnd := session("p1", "2027-11-09T12:00:00Z", "2027-11-09T12:00:00Z")
	rel := release("Europe/Vienna", s, online, noEnd)
	raw, cal := render(t, rel, Options{Domain: "agenda.example.org", PageURL: "https://agenda.example.org/e/summit#top"})
	if !strings.Contains(string(raw), "\r\nREFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n") {
		t.Errorf("no REFRESH-INTERVAL of an hour")
	}

	for _, c := range []struct {
		p    ics.Property
		want string
	}{{ics.PropertyProductId, productID}, {ics.PropertyVersion, "2.0"}, {ics.PropertyCalscale, "GREGORIAN"},
		{ics.PropertyMethod, "PUBLISH"}, {ics.PropertyXWRCalName, "Plenary Summit 2027"}, {ics.PropertyXWRTimezone, "Europe/Vienna"},
		{ics.PropertyXPublishedTTL, "PT1H"}} {
		if got := calProp(cal, c.p); got != c.want {
			t.Errorf("VCALENDAR %s %q, want %q", c.p, got, c.want)
		}
	}
	tests := []struct {
		uid  string
		p    ics.ComponentProperty
		want string
	}{
		{"k1@agenda.example.org", ics.ComponentPropertyDtstamp, "20270201T120000Z"},
		{"k1@agenda.example.org", ics.ComponentPropertySummary, "Opening keynote"},
		{"k1@agenda.example.org", ics.ComponentPropertyDescription, "Why hybrid works.\n\nTrack: Main\nSpeakers: Ana Pérez (OSCE), Ben Okafor"},
		{"k1@agenda.example.org", ics.ComponentPropertyLocation, "Festsaal / Online"},
		{"k1@agenda.example.org", ics.ComponentPropertySequence, "3"},
		{"k1@agenda.example.org", ics.ComponentPropertyLastModified, "20270120T083000Z"},
		{"k1@agenda.example.org", ics.ComponentPropertyStatus, "CONFIRMED"},
		{"k1@agenda.example.org", ics.ComponentPropertyUrl, "https://agenda.example.org/e/summit#s-k1"},
		{"o1@agenda.example.org", ics.ComponentPropertyLocation, "Online"},
		{"p1@agenda.example.org", ics.ComponentPropertyDtEnd, ""}, // no end: none written
		{"p1@agenda.example.org", ics.ComponentPropertyLocation, "Festsaal"},
	}
	for _, tc := range tests {
		if got := value(&event(t, cal, tc.uid).ComponentBase, tc.p); got != tc.want {
			t.Errorf("%s %s %q, want %q", tc.uid, tc.p, got, tc.want)
		}
	}
}

// UIDs stay, SEQUENCE follows the session's own Sequence: calendars update
// only what changed.
func TestFeedUIDAndSequenceAcrossReleases(t *testing.T) {
	v1 := release("Europe/Vienna",
		session("a", "2027-11-09T08:00:00Z", "2027-11-09T09:00:00Z"),
		session("b", "2027-11-09T09:00:00Z", "2027-11-09T10:00:00Z"),
		session("c", "2027-11-09T10:00:00Z", "2027-11-09T11:00:00Z"))
	v2 := release("Europe/Vienna", append([]events.Session(nil), v1.Sessions...)...)
	v2.Version, v2.Previous, v2.PublishedAt = 2, 1, published.Add(48*time.Hour)
	v2.Sessions[1].Title, v2.Sessions[1].Sequence, v2.Sessions[1].ChangedAt = "Renamed", 2, v2.PublishedAt

	opt := Options{Domain: "agenda.example.org"}
	_, cal1 := render(t, v1, opt)
	_, cal2 := render(t, v2, opt)
	tests := []struct {
		id                 string
		wantSeq1, wantSeq2 string
		wantModified2      string
	}{
		{"a", "1", "1", "20270201T120000Z"},
		{"b", "1", "2", "20270203T120000Z"},
		{"c", "1", "1", "20270201T120000Z"},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			uid := tc.id + "@agenda.example.org"
			e1, e2 := event(t, cal1, uid), event(t, cal2, uid) // fails unless both carry the UID
			if got := value(&e1.ComponentBase, ics.ComponentPropertySequence); got != tc.wantSeq1 {
				t.Errorf("release 1: SEQUENCE %s, want %s", got, tc.wantSeq1)
			}
			if got := value(&e2.ComponentBase, ics.ComponentPropertySequence); got != tc.wantSeq2 {
				t.Errorf("release 2: SEQUENCE %s, want %s", got, tc.wantSeq2)
			}
			if got := value(&e2.ComponentBase, ics.ComponentPropertyLastModified); got != tc.wantModified2 {
				t.Errorf("release 2: LAST-MODIFIED %s, want %s", got, tc.wantModified2)
			}
			if got := value(&e2.ComponentBase, ics.ComponentPropertyDtstamp); got != "20270203T120000Z" {
				t.Errorf("release 2: DTSTAMP %s, want the release's publication", got)
			}
		})
	}
	if n1, n2 := len(cal1.Events()), len(cal2.Events()); n1 != 3 || n2 != 3 {
		t.Errorf("%d and %d VEVENTs, want 3 each", n1, n2)
	}
}

// A cancelled session stays in the feed, marked so; Select keeps it for a
// person's invite and leaves the release alone.
func TestFeedCancelledSessionsStay(t *testing.T) {
	gone := session("gone", "2027-11-09T09:00:00Z", "2027-11-09T10:00:00Z")
	gone.Cancelled, gone.Sequence = true, 2
	rel := release("Europe/Vienna",
		session("kept", "2027-11-09T08:00:00Z", "2027-11-09T09:00:00Z"), gone,
		session("other", "2027-11-09T10:00:00Z", "2027-11-09T11:00:00Z"))
	rel.Changes = []events.SessionChange{{SessionID: "gone", Kinds: []string{events.ChangeCancelled}}}

	tests := []struct {
		name string
		rel  *events.Release
		want map[string]string // UID → STATUS
	}{
		{"whole release", rel, map[string]string{"kept@plenary": "CONFIRMED", "gone@plenary": "CANCELLED", "other@plenary": "CONFIRMED"}},
		{"selected", Select(rel, "gone", "kept", "unknown"), map[string]string{"kept@plenary": "CONFIRMED", "gone@plenary": "CANCELLED"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, cal := render(t, tc.rel, Options{})
			got := map[string]string{}
			for _, ev := range cal.Events() {
				got[ev.Id()] = value(&ev.ComponentBase, ics.ComponentPropertyStatus)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("STATUS by UID %v, want %v", got, tc.want)
			}
		})
	}
	if len(rel.Sessions) != 3 || len(rel.Changes) != 1 {
		t.Errorf("Select changed the release: %d sessions, %d changes", len(rel.Sessions), len(rel.Changes))
	}
}

// Meeting links only when asked; never anything about participants.
func TestFeedJoinURLsAndPersonalData(t *testing.T) {
	s := session("a", "2027-11-09T08:00:00Z", "2027-11-09T09:00:00Z")
	s.Format, s.JoinURL = events.FormatOnline, "https://meet.example.org/room-a?pwd=s3cret"
	s.Speakers = []events.Speaker{{Name: "Ana Pérez", Affiliation: "OSCE"}}
	rel := release("Europe/Vienna", s)
	tests := []struct {
		name     string
		opt      Options
		wantJoin bool
	}{
		{"public feed", Options{}, false},
		{"public feed with a page", Options{PageURL: "https://agenda.example.org/e/summit"}, false},
		{"personal invite", Options{JoinURLs: true}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			feed, cal := render(t, rel, tc.opt)
			if got := bytes.Contains(feed, []byte("meet.example.org")); got != tc.wantJoin {
				t.Errorf("meeting URL in the feed: %v, want %v\n%s", got, tc.wantJoin, feed)
			}
			ev := event(t, cal, "a@plenary")
			if tc.wantJoin {
				if got := value(&ev.ComponentBase, "CONFERENCE"); got != s.JoinURL {
					t.Errorf("CONFERENCE %q, want %q", got, s.JoinURL)
				}
				if d := value(&ev.ComponentBase, ics.ComponentPropertyDescription); !strings.Contains(d, "Join: "+s.JoinURL) {
					t.Errorf("DESCRIPTION lacks the link: %q", d)
				}
			}
			for _, p := range []ics.ComponentProperty{ics.ComponentPropertyAttendee, ics.ComponentPropertyOrganizer, ics.ComponentPropertyContact} {
				if ev.HasProperty(p) {
					t.Errorf("the VEVENT has %s", p)
				}
			}
			for _, line := range unfold(feed) {
				if strings.Contains(line, "@") && !strings.HasPrefix(line, "UID:") {
					t.Errorf("an address-like line: %q", line)
				}
			}
		})
	}
}
