// Package calendar renders agenda releases as RFC 5545 iCalendar feeds: the
// public subscription feed of an event, and the invite attached to a
// person's mail (the same feed over the sessions that concern them).
//
// A session keeps its UID across releases and its SEQUENCE is the release in
// which it last changed, so a calendar that reads a later feed updates the
// sessions that changed, and a cancelled session (kept in every later release)
// turns into STATUS:CANCELLED instead of silently disappearing.
package calendar

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"

	ics "github.com/arran4/golang-ical"

	"github.com/plenaryhq/plenary/pkg/events"
)

// ContentType is the media type of a feed, for HTTP responses and mail
// attachments alike (the method parameter matches the feed's METHOD).
const ContentType = "text/calendar; charset=utf-8; method=PUBLISH"

// productID names the software that wrote a feed (PRODID).
const productID = "-//Plenary//Agenda//EN"

// Options say how a release is rendered.
type Options struct {
	// Domain ends every UID ("<session id>@<Domain>"); e.g. the host of PUBLIC_URL. Default "plenary".
	Domain string
	// PageURL is the public agenda page; each VEVENT's URL is PageURL + "#s-" + session id. Optional.
	PageURL string
	// JoinURLs includes sessions' meeting URLs (never in public feeds: the way in is the participant's personal link). Default false.
	JoinURLs bool
}

// Feed renders rel as a VCALENDAR (METHOD:PUBLISH) with one VEVENT per session, cancelled ones included.
//
// Times are written as wall time in the event's zone, defined by a VTIMEZONE
// built from Go's tz data; in UTC when the zone cannot be loaded, and for the
// second pass through an hour repeated when clocks go back. A feed never
// names participants: no ATTENDEE, no ORGANIZER.
func Feed(rel *events.Release, opt Options) ([]byte, error) {
	if rel == nil {
		return nil, errors.New("calendar: no release")
	}
	if rel.PublishedAt.IsZero() {
		return nil, fmt.Errorf("calendar: event[%s] release[%d]: no publication time", rel.EventID, rel.Version)
	}
	var page *url.URL
	if opt.PageURL != "" {
		u, err := webURL(opt.PageURL)
		if err != nil {
			return nil, fmt.Errorf("calendar: page URL: %w", err)
		}
		page = u
	}
	domain := oneLine(opt.Domain)
	if domain == "" {
		domain = "plenary"
	}

	z := loadZone(rel.Timezone, rel.Sessions, rel.PublishedAt)
	cal := ics.NewCalendarFor("Plenary")
	cal.SetProductId(productID)
	cal.SetCalscale("GREGORIAN")
	cal.SetMethod(ics.MethodPublish)
	if title := oneLine(rel.Title); title != "" {
		cal.SetName(title) // NAME (RFC 7986) and X-WR-CALNAME
	}
	// Panels move until the last minute: subscribed calendars should look
	// again hourly (RFC 7986, and the older X- property Outlook reads).
	cal.SetRefreshInterval("PT1H") // golang-ical names it REFRESH-INTERVAL;VALUE=DURATION
	cal.SetXPublishedTTL("PT1H")
	if z.name != "" {
		cal.SetXWRTimezone(z.name)
		cal.AddVTimezone(z.vtimezone())
	} else {
		cal.SetXWRTimezone("UTC") // what the times are written in
	}
	for i := range rel.Sessions {
		cal.AddVEvent(vevent(&rel.Sessions[i], rel.PublishedAt, z, domain, page, opt.JoinURLs))
	}

	var b bytes.Buffer
	// golang-ical ends lines in LF unless told; RFC 5545 wants CRLF.
	if err := cal.SerializeTo(&b, ics.WithNewLineWindows); err != nil {
		return nil, fmt.Errorf("calendar: event[%s] release[%d]: %w", rel.EventID, rel.Version, err)
	}
	return b.Bytes(), nil
}

// Select returns a copy of rel with only the sessions (and changes) whose ids
// are given, in agenda order, for one person's invite; rel is not changed.
// Pass the ids of cancelled sessions too: a PUBLISH feed takes a session off
// a calendar by sending it again, under the same UID with a higher SEQUENCE,
// as STATUS:CANCELLED. (METHOD:CANCEL would need ORGANIZER and ATTENDEE,
// which a feed never carries.)
func Select(rel *events.Release, ids ...string) *events.Release {
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		keep[id] = true
	}
	out := *rel
	out.Sessions, out.Changes = nil, nil
	for _, s := range rel.Sessions {
		if keep[s.ID] {
			out.Sessions = append(out.Sessions, s)
		}
	}
	for _, c := range rel.Changes {
		if keep[c.SessionID] {
			out.Changes = append(out.Changes, c)
		}
	}
	return &out
}

// vevent is one session. stamp is the release's publication: DTSTAMP says
// when this version of the feed was made.
func vevent(s *events.Session, stamp time.Time, z zone, domain string, page *url.URL, joinURLs bool) *ics.VEvent {
	ev := ics.NewEvent(oneLine(s.ID) + "@" + domain)
	ev.SetDtStampTime(stamp)
	z.set(&ev.ComponentBase, ics.ComponentPropertyDtStart, s.StartsAt)
	if s.EndsAt.After(s.StartsAt) {
		z.set(&ev.ComponentBase, ics.ComponentPropertyDtEnd, s.EndsAt)
	}
	ev.SetSummary(oneLine(s.Title))
	if loc := location(s); loc != "" {
		ev.SetLocation(loc)
	}
	var join string
	if joinURLs && s.JoinURL != "" {
		// A link that is not http(s) (or not a URL) is left out, not passed on.
		if u, err := webURL(s.JoinURL); err == nil {
			join = u.String()
			ev.SetProperty("CONFERENCE", join, ics.WithValue(string(ics.ValueDataTypeUri))) // RFC 7986
		}
	}
	if d := description(s, join); d != "" {
		ev.SetDescription(d)
	}
	ev.SetSequence(s.Sequence)
	if !s.ChangedAt.IsZero() {
		ev.SetLastModifiedAt(s.ChangedAt)
	}
	if s.Cancelled {
		ev.SetStatus(ics.ObjectStatusCancelled)
	} else {
		ev.SetStatus(ics.ObjectStatusConfirmed)
	}
	if page != nil {
		u := *page
		u.Fragment, u.RawFragment = "s-"+s.ID, ""
		ev.SetURL(u.String())
	}
	return ev
}

// location is where a session happens: its room, online, or both.
func location(s *events.Session) string {
	room := oneLine(s.Room)
	switch s.Format {
	case events.FormatOnline:
		return "Online"
	case events.FormatHybrid:
		if room == "" {
			return "Online"
		}
		return room + " / Online"
	}
	return room
}

// description is the abstract, then the track, the speakers and (when
// given) the meeting link, one per line.
func description(s *events.Session, join string) string {
	var facts []string
	if track := oneLine(s.Track); track != "" {
		facts = append(facts, "Track: "+track)
	}
	var speakers []string
	for _, sp := range s.Speakers {
		name := oneLine(sp.Name)
		if aff := oneLine(sp.Affiliation); aff != "" {
			name += " (" + aff + ")"
		}
		if name != "" {
			speakers = append(speakers, name)
		}
	}
	if len(speakers) > 0 {
		facts = append(facts, "Speakers: "+strings.Join(speakers, ", "))
	}
	if join != "" {
		facts = append(facts, "Join: "+join)
	}
	var parts []string
	if abstract := strings.TrimSpace(text(s.Abstract)); abstract != "" {
		parts = append(parts, abstract)
	}
	if len(facts) > 0 {
		parts = append(parts, strings.Join(facts, "\n"))
	}
	return strings.Join(parts, "\n\n")
}

// webURL parses an http(s) URL. URI values are written unescaped, so only a
// URL that parsed (no control characters) and is re-encoded goes in a feed.
func webURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL", raw)
	}
	return u, nil
}

// text makes s safe as a TEXT value. golang-ical escapes backslashes,
// commas, semicolons and LF, but passes CR and other control characters
// through; some readers end a line at a bare CR, which would let a title
// inject properties. Line breaks become LF (escaped as \n), other controls
// are dropped, invalid UTF-8 is replaced.
func text(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r == '\r' || r == '\u0085' || r == '\u2028' || r == '\u2029':
			return '\n'
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
}

// oneLine is text for single-line values (titles, names, rooms): line
// breaks and tabs become spaces.
func oneLine(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, text(s)))
}
