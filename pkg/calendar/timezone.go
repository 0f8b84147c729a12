package calendar

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	ics "github.com/arran4/golang-ical"

	"github.com/plenaryhq/plenary/pkg/events"
)

// localFormat is an RFC 5545 DATE-TIME in local ("floating" or TZID) form.
const localFormat = "20060102T150405"

// zone is the event's time zone as a feed writes it. A zero zone (no name)
// writes every time in UTC and no VTIMEZONE.
type zone struct {
	name string
	loc  *time.Location
	// shifts are the observances in onset order over whole years; the
	// first is the one in effect when the window starts, the others are
	// real transitions.
	shifts []shift
	years  int // how many years the window spans
}

// shift is a change of observance (UTC offset, abbreviation or DST flag).
type shift struct {
	at       time.Time // first instant of the new observance
	from, to int       // UTC offsets in seconds east, before and after
	name     string
	dst      bool
}

// observation is what the tz data says about one instant.
type observation struct {
	name string
	off  int
	dst  bool
}

func observe(t time.Time, loc *time.Location) observation {
	t = t.In(loc)
	name, off := t.Zone()
	return observation{name: name, off: off, dst: t.IsDST()}
}

// maxYears bounds the years a VTIMEZONE covers: an agenda spans days, and
// sessions decades apart are a data error that should not cost a scan of
// the decades between.
const maxYears = 10

// loadZone loads the named zone and finds its observances over the whole
// years the sessions fall in (the year of at when there are none) and the
// year before. The zone is zero when the name is UTC or cannot be loaded,
// or the sessions span more than maxYears: then UTC times are exact and
// need no definition.
func loadZone(name string, sessions []events.Session, at time.Time) zone {
	if !tzidSafe(name) {
		return zone{}
	}
	loc, err := time.LoadLocation(name)
	if err != nil || loc == time.UTC {
		return zone{}
	}
	var first, last time.Time
	for _, s := range sessions {
		for _, t := range []time.Time{s.StartsAt, s.EndsAt} {
			if t.IsZero() {
				continue
			}
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
	}
	if first.IsZero() {
		first, last = at, at
	}
	// A year before the sessions' first: every observance in effect during
	// them then has an onset before them.
	from := time.Date(first.In(loc).Year()-1, 1, 1, 0, 0, 0, 0, loc)
	to := time.Date(last.In(loc).Year()+1, 1, 1, 0, 0, 0, 0, loc)
	if to.Year()-from.Year() > maxYears {
		return zone{}
	}
	return zone{name: name, loc: loc, shifts: shifts(loc, from, to), years: to.Year() - from.Year()}
}

// tzidSafe reports whether name can be a TZID parameter as is: golang-ical
// backslash-escapes parameter values, which RFC 5545 does not know, so only
// names that need no quoting are used. "Local" is the server's zone, not the
// event's.
func tzidSafe(name string) bool {
	if name == "" || name == "Local" {
		return false
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("/_+-", r)) {
			return false
		}
	}
	return true
}

// shifts lists the observances from start to (not including) end. Go does not expose a
// zone's transitions, so it samples every few hours (no zone changes twice
// that fast) and bisects to the second where the observance changes.
func shifts(loc *time.Location, start, end time.Time) []shift {
	const step = 6 * 60 * 60 // seconds
	cur := observe(start, loc)
	out := []shift{{at: start, from: cur.off, to: cur.off, name: cur.name, dst: cur.dst}}
	for t := start.Unix(); t < end.Unix(); t += step {
		hi := min(t+step, end.Unix()-1)
		next := observe(time.Unix(hi, 0), loc)
		if next == cur {
			continue
		}
		lo := t // cur holds at lo, next at hi
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			if observe(time.Unix(mid, 0), loc) == cur {
				lo = mid
			} else {
				hi = mid
			}
		}
		out = append(out, shift{at: time.Unix(hi, 0).UTC(), from: cur.off, to: next.off, name: next.name, dst: next.dst})
		cur = next
	}
	return out
}

// set writes a DATE-TIME property: local wall time with the zone's TZID, or
// UTC when the zone is zero or the wall time is the second of two. Clocks set
// back repeat an hour, and RFC 5545 (3.3.5) reads a repeated local time as
// its first occurrence, so the second can only be written in UTC.
func (z zone) set(c *ics.ComponentBase, p ics.ComponentProperty, t time.Time) {
	if z.name == "" || z.repeated(t) {
		c.SetProperty(p, t.UTC().Format(localFormat+"Z"))
		return
	}
	// Not golang-ical's SetStartAt: it always writes UTC, even with a TZID.
	c.SetProperty(p, t.In(z.loc).Format(localFormat), ics.WithTZID(z.name))
}

// repeated reports whether t's wall time already occurred earlier, in the
// hour (or so) before a clock was set back.
func (z zone) repeated(t time.Time) bool {
	for _, s := range z.shifts[1:] {
		back := time.Duration(s.from-s.to) * time.Second
		if back > 0 && !t.Before(s.at) && t.Before(s.at.Add(back)) {
			return true
		}
	}
	return false
}

// vtimezone defines the zone. Outlook reduces any VTIMEZONE to one yearly
// STANDARD and one yearly DAYLIGHT rule (MS-OXCICAL 2.1.3.1.1.19), so a zone
// whose onsets follow such rules gets exactly that; any other zone gets one
// observance per onset, exact for the years covered.
func (z zone) vtimezone() *ics.VTimezone {
	tz := ics.NewTimezone(z.name)
	if rules, ok := yearlyRules(z.shifts[1:], z.years); ok {
		for _, r := range rules {
			tz.Components = append(tz.Components, observance(r.first, r.rrule))
		}
		return tz
	}
	for _, s := range z.shifts {
		tz.Components = append(tz.Components, observance(s, ""))
	}
	return tz
}

// observance is a STANDARD or DAYLIGHT sub-component starting at s.
func observance(s shift, rrule string) ics.Component {
	var (
		c    ics.Component
		base *ics.ComponentBase
	)
	if s.dst {
		d := &ics.Daylight{}
		c, base = d, &d.ComponentBase
	} else {
		st := ics.NewStandard()
		c, base = st, &st.ComponentBase
	}
	// The onset is written in the wall time of the observance it ends.
	base.SetProperty(ics.ComponentPropertyDtStart, s.at.In(time.FixedZone("", s.from)).Format(localFormat))
	if rrule != "" {
		base.SetProperty(ics.ComponentPropertyRrule, rrule)
	}
	base.SetProperty(ics.ComponentProperty(ics.PropertyTzoffsetfrom), utcOffset(s.from))
	base.SetProperty(ics.ComponentProperty(ics.PropertyTzoffsetto), utcOffset(s.to))
	if s.name != "" {
		base.SetProperty(ics.ComponentProperty(ics.PropertyTzname), s.name)
	}
	return c
}

// rule is an observance that recurs once a year from its first onset.
type rule struct {
	first shift
	rrule string
}

// yearlyRules expresses onsets as one yearly rule for standard time and one
// for daylight saving time, when each of the window's years has exactly one
// onset of each, each on the same n-th (or last) weekday of the same month at
// the same time, between the same two offsets. Otherwise it reports false.
func yearlyRules(onsets []shift, years int) ([]rule, bool) {
	var std, dst []shift
	for _, s := range onsets {
		if s.dst {
			dst = append(dst, s)
		} else {
			std = append(std, s)
		}
	}
	if len(std) == 0 || len(dst) == 0 || std[0].from != dst[0].to || std[0].to != dst[0].from {
		return nil, false
	}
	var rules []rule
	for _, ons := range [][]shift{std, dst} {
		rrule, ok := yearly(ons, years)
		if !ok {
			return nil, false
		}
		rules = append(rules, rule{first: ons[0], rrule: rrule})
	}
	if rules[1].first.at.Before(rules[0].first.at) {
		rules[0], rules[1] = rules[1], rules[0]
	}
	return rules, true
}

// yearly is the RRULE that yields exactly ons, one onset in each of years
// consecutive years, or false.
func yearly(ons []shift, years int) (string, bool) {
	if len(ons) != years {
		return "", false
	}
	wall := func(s shift) time.Time { return s.at.In(time.FixedZone("", s.from)) }
	w0 := wall(ons[0])
	n := (w0.Day()-1)/7 + 1
	nth, last := true, true
	for i, s := range ons {
		w := wall(s)
		if w.Year() != w0.Year()+i || w.Month() != w0.Month() || w.Weekday() != w0.Weekday() ||
			w.Format("150405") != w0.Format("150405") || s.from != ons[0].from || s.to != ons[0].to || s.name != ons[0].name {
			return "", false
		}
		nth = nth && (w.Day()-1)/7+1 == n
		last = last && w.AddDate(0, 0, 7).Month() != w.Month()
	}
	day := strings.ToUpper(w0.Weekday().String()[:2])
	switch {
	case nth && n <= 3:
		day = strconv.Itoa(n) + day
	case last:
		day = "-1" + day
	case nth && n == 4:
		day = "4" + day
	default:
		return "", false
	}
	return fmt.Sprintf("FREQ=YEARLY;BYMONTH=%d;BYDAY=%s", w0.Month(), day), true
}

// utcOffset formats seconds east of UTC as an RFC 5545 UTC-OFFSET (+HHMM,
// seconds only when there are some; never -0000).
func utcOffset(sec int) string {
	sign := '+'
	if sec < 0 {
		sign, sec = '-', -sec
	}
	s := fmt.Sprintf("%c%02d%02d", sign, sec/3600, sec/60%60)
	if sec%60 != 0 {
		s += fmt.Sprintf("%02d", sec%60)
	}
	return s
}
