package calendar

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	ics "github.com/arran4/golang-ical"

	"github.com/plenaryhq/plenary/pkg/events"
)

// published is when the fixtures' first release came out.
var published = time.Date(2027, 2, 1, 12, 0, 0, 0, time.UTC)

// release is a release of one event in zone tz.
func release(tz string, sessions ...events.Session) *events.Release {
	return &events.Release{
		EventID: "ev1", Slug: "summit", Title: "Plenary Summit 2027", Timezone: tz,
		Version: 1, PublishedAt: published, Sessions: sessions,
	}
}

// session is a live in-person session from start to end (RFC 3339).
func session(id, start, end string) events.Session {
	return events.Session{
		ID: id, Title: "Session " + id, StartsAt: instant(start), EndsAt: instant(end),
		Room: "Festsaal", Format: events.FormatInPerson, Sequence: 1, ChangedAt: published,
	}
}

func instant(rfc3339 string) time.Time {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		panic(err)
	}
	return t
}

// render renders rel, checks the physical lines of the feed and parses it
// back with golang-ical.
func render(t *testing.T, rel *events.Release, opt Options) ([]byte, *ics.Calendar) {
	t.Helper()
	feed, err := Feed(rel, opt)
	if err != nil {
		t.Fatalf("Feed: %v", err)
	}
	checkLines(t, feed)
	cal, err := ics.ParseCalendar(bytes.NewReader(feed))
	if err != nil {
		t.Fatalf("golang-ical cannot parse the feed: %v\n%s", err, feed)
	}
	return feed, cal
}

// checkLines checks RFC 5545 3.1: every line ends in CRLF, no CR or LF
// inside a line, at most 75 octets, and no UTF-8 character split by a fold.
func checkLines(t *testing.T, feed []byte) {
	t.Helper()
	if !bytes.HasSuffix(feed, []byte("\r\n")) {
		t.Errorf("the feed does not end in CRLF: %q", feed[max(0, len(feed)-20):])
	}
	for i, line := range strings.Split(strings.TrimSuffix(string(feed), "\r\n"), "\r\n") {
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("line %d holds a bare CR or LF: %q", i+1, line)
		}
		if len(line) > 75 {
			t.Errorf("line %d is %d octets long: %q", i+1, len(line), line)
		}
		if !utf8.ValidString(line) {
			t.Errorf("line %d is not valid UTF-8 (a fold split a character?): %q", i+1, line)
		}
	}
}

// unfold joins folded lines (RFC 5545 3.1) into logical content lines.
func unfold(feed []byte) []string {
	s := strings.NewReplacer("\r\n ", "", "\r\n\t", "").Replace(string(feed))
	return strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n")
}

// event returns the VEVENT with uid.
func event(t *testing.T, cal *ics.Calendar, uid string) *ics.VEvent {
	t.Helper()
	for _, ev := range cal.Events() {
		if ev.Id() == uid {
			return ev
		}
	}
	t.Fatalf("no VEVENT with UID %q", uid)
	return nil
}

// value is the value of c's property p, "" when it has none.
func value(c *ics.ComponentBase, p ics.ComponentProperty) string {
	if prop := c.GetProperty(p); prop != nil {
		return prop.Value
	}
	return ""
}

// calProp is the value of a calendar property, "" when there is none.
func calProp(cal *ics.Calendar, p ics.Property) string {
	for _, prop := range cal.CalendarProperties {
		if prop.IANAToken == string(p) {
			return prop.Value
		}
	}
	return ""
}

// written is a DATE-TIME property as written: "TZID=<zone>:<local>" or the
// bare value.
func written(p *ics.IANAProperty) string {
	if tz := p.ICalParameters["TZID"]; len(tz) > 0 {
		return "TZID=" + strings.Join(tz, ",") + ":" + p.Value
	}
	return p.Value
}

// tzPart is a STANDARD or DAYLIGHT sub-component of a parsed VTIMEZONE.
type tzPart struct {
	kind, dtstart, rrule, name string
	from, to                   time.Duration
}

func (p tzPart) String() string {
	return strings.TrimSpace(fmt.Sprintf("%s %s %s %s %s %s", p.kind, p.dtstart, fmtOffset(p.from), fmtOffset(p.to), p.name, p.rrule))
}

// zones reads the feed's own VTIMEZONEs, by TZID: the resolver below trusts
// them, not Go's tz data.
func zones(t *testing.T, cal *ics.Calendar) map[string][]tzPart {
	t.Helper()
	out := map[string][]tzPart{}
	for _, tz := range cal.Timezones() {
		id := value(&tz.ComponentBase, ics.ComponentPropertyTzid)
		for _, c := range tz.Components {
			var base *ics.ComponentBase
			p := tzPart{}
			switch c := c.(type) {
			case *ics.Standard:
				base, p.kind = &c.ComponentBase, "STANDARD"
			case *ics.Daylight:
				base, p.kind = &c.ComponentBase, "DAYLIGHT"
			default:
				t.Fatalf("VTIMEZONE %s holds a %T", id, c)
			}
			p.dtstart = value(base, ics.ComponentPropertyDtStart)
			p.rrule = value(base, ics.ComponentPropertyRrule)
			p.from = parseOffset(t, value(base, ics.ComponentProperty(ics.PropertyTzoffsetfrom)))
			p.to = parseOffset(t, value(base, ics.ComponentProperty(ics.PropertyTzoffsetto)))
			p.name = value(base, ics.ComponentProperty(ics.PropertyTzname))
			out[id] = append(out[id], p)
		}
	}
	return out
}

// onset is an instant from which an observance holds.
type onset struct {
	at       time.Time
	from, to time.Duration
}

// onsets expands a VTIMEZONE's observances (DTSTART, and a yearly RRULE
// when there is one) up to the end of year until, in order.
func onsets(t *testing.T, parts []tzPart, until int) []onset {
	t.Helper()
	var out []onset
	for _, p := range parts {
		start, err := time.Parse(localFormat, p.dtstart)
		if err != nil {
			t.Fatalf("%s DTSTART %q: %v", p.kind, p.dtstart, err)
		}
		walls := []time.Time{start}
		if p.rrule != "" {
			walls = yearlyOnsets(t, p.rrule, start, until)
		}
		for _, w := range walls {
			out = append(out, onset{at: w.Add(-p.from), from: p.from, to: p.to})
		}
	}
	slices.SortFunc(out, func(a, b onset) int { return a.at.Compare(b.at) })
	for i := 1; i < len(out); i++ {
		if out[i].from != out[i-1].to {
			t.Errorf("the onset at %s comes from %s, but the one before went to %s", out[i].at, out[i].from, out[i-1].to)
		}
	}
	return out
}

// yearlyOnsets expands "FREQ=YEARLY;BYMONTH=m;BYDAY=<n><weekday>", the only
// kind of rule a time zone needs; anything else fails the test.
func yearlyOnsets(t *testing.T, rrule string, start time.Time, until int) []time.Time {
	t.Helper()
	parts := map[string]string{}
	for _, kv := range strings.Split(rrule, ";") {
		k, v, _ := strings.Cut(kv, "=")
		parts[k] = v
	}
	month, err1 := strconv.Atoi(parts["BYMONTH"])
	byday := parts["BYDAY"]
	wd := slices.Index([]string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"}, byday[max(0, len(byday)-2):])
	n, err2 := strconv.Atoi(byday[:max(0, len(byday)-2)])
	if len(parts) != 3 || parts["FREQ"] != "YEARLY" || err1 != nil || err2 != nil || wd < 0 || n == 0 || n < -1 || n > 4 {
		t.Fatalf("unexpected time zone RRULE %q", rrule)
	}
	var out []time.Time
	for y := start.Year(); y <= until; y++ {
		var day int
		if n > 0 {
			first := time.Date(y, time.Month(month), 1, 0, 0, 0, 0, time.UTC)
			day = 1 + (wd-int(first.Weekday())+7)%7 + (n-1)*7
		} else {
			last := time.Date(y, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC)
			day = last.Day() - (int(last.Weekday())-wd+7)%7
		}
		w := time.Date(y, time.Month(month), day, start.Hour(), start.Minute(), start.Second(), 0, time.UTC)
		if y == start.Year() && !w.Equal(start) {
			t.Errorf("RRULE %q does not start at its DTSTART %s", rrule, start.Format(localFormat))
		}
		out = append(out, w)
	}
	return out
}

// resolve turns a DATE-TIME property into an instant. A local time is
// looked up in the feed's VTIMEZONE: under each onset it names the instant
// wall - TZOFFSETTO, valid when that falls from the onset to the next one;
// when two are valid (clocks set back) RFC 5545 takes the first; when none
// is (a gap, or before the first onset), it fails.
func resolve(t *testing.T, tzs map[string][]tzPart, p *ics.IANAProperty) time.Time {
	t.Helper()
	if strings.HasSuffix(p.Value, "Z") {
		at, err := time.Parse(localFormat+"Z", p.Value)
		if err != nil {
			t.Fatalf("%s: %v", p.IANAToken, err)
		}
		if len(p.ICalParameters["TZID"]) > 0 {
			t.Errorf("%s: a UTC time with a TZID: %s", p.IANAToken, written(p))
		}
		return at
	}
	tzid := p.ICalParameters["TZID"]
	if len(tzid) != 1 {
		t.Fatalf("%s %q: a floating time (no TZID, no Z)", p.IANAToken, p.Value)
	}
	parts, ok := tzs[tzid[0]]
	if !ok {
		t.Fatalf("%s: no VTIMEZONE for TZID %q", p.IANAToken, tzid[0])
	}
	wall, err := time.Parse(localFormat, p.Value)
	if err != nil {
		t.Fatalf("%s: %v", p.IANAToken, err)
	}
	ons := onsets(t, parts, wall.Year()+1)
	var found []time.Time
	for i, o := range ons {
		at := wall.Add(-o.to)
		if at.Before(o.at) || i+1 < len(ons) && !at.Before(ons[i+1].at) {
			continue
		}
		found = append(found, at)
	}
	if len(found) == 0 {
		t.Fatalf("%s: %s names no instant under the feed's VTIMEZONE %v", p.IANAToken, written(p), parts)
	}
	return slices.MinFunc(found, func(a, b time.Time) int { return a.Compare(b) })
}

// checkInstants checks that every session's start and end read back from the
// feed, through its own VTIMEZONEs, as the same instants.
func checkInstants(t *testing.T, rel *events.Release, cal *ics.Calendar, domain string) {
	t.Helper()
	tzs := zones(t, cal)
	for _, s := range rel.Sessions {
		ev := event(t, cal, s.ID+"@"+domain)
		for _, c := range []struct {
			p    ics.ComponentProperty
			want time.Time
		}{{ics.ComponentPropertyDtStart, s.StartsAt}, {ics.ComponentPropertyDtEnd, s.EndsAt}} {
			p := ev.GetProperty(c.p)
			if p == nil {
				t.Errorf("session %s: no %s", s.ID, c.p)
				continue
			}
			if got := resolve(t, tzs, p); !got.Equal(c.want) {
				t.Errorf("session %s: %s %s reads as %s, want %s", s.ID, c.p, written(p), got.UTC(), c.want.UTC())
			}
		}
	}
}

func parseOffset(t *testing.T, s string) time.Duration {
	t.Helper()
	if len(s) != 5 && len(s) != 7 || s[0] != '+' && s[0] != '-' || s == "-0000" {
		t.Fatalf("bad UTC-OFFSET %q", s)
	}
	var d time.Duration
	for i, unit := range []time.Duration{time.Hour, time.Minute, time.Second} {
		if 1+2*i >= len(s) {
			break
		}
		n, err := strconv.Atoi(s[1+2*i : 3+2*i])
		if err != nil {
			t.Fatalf("bad UTC-OFFSET %q", s)
		}
		d += time.Duration(n) * unit
	}
	if s[0] == '-' {
		d = -d
	}
	return d
}

func fmtOffset(d time.Duration) string {
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%02d%02d", sign, int(d.Hours()), int(d.Minutes())%60)
}
