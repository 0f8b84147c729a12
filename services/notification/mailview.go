package notification

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
)

// view is what the templates see: a letter made safe and formatted in the
// recipient's language. Every string is plain text; the HTML templates escape
// it. T and N look the words up in the catalogs.
type view struct {
	lang *i18n.Localizer
	data map[string]any // what every message may use: Title, Name, Mode, In, Subject

	Lang, Kind, Status, Reason string
	Name, Title                string
	Online                     bool
	Mode                       string // "online" or "in person", in the language
	// When is the event's time in its zone; LocalWhen the same in an online
	// attendee's own zone (LocalZone) when that reads differently.
	When, LocalWhen, LocalZone                              string
	VenueName, VenueAddress                                 string
	ManageURL, JoinURL, EventURL, AgendaURL, UnsubscribeURL string
	Note                                                    string // a rejection's note from the organisers
	Invite                                                  bool   // an invite.ics comes with the email
	In                                                      string // a reminder's "in 24 hours"; "" when soon
	Sessions                                                []sessionView
	Subject, Body                                           string     // an announcement's, as written
	Paragraphs                                              [][]string // Body's paragraphs and their lines
	Signature                                               string
}

// sessionView is one session in a reminder or an agenda notice.
type sessionView struct {
	// Day heads the sessions of a day in the event's zone: set on the first.
	Day  string
	Mark string // notices: "New", "Cancelled" or "Changed", in the language
	// When is the session's time of day in the event's zone; LocalWhen in an
	// online attendee's, with the date when that is another day.
	Title, When, LocalWhen, Room, JoinURL string
	Changes                               []string // what changed, a line each
}

// T returns catalog message id; pairs add to the data every message sees.
func (v view) T(id string, pairs ...any) string { return v.lang.T(id, v.data, dataOf(pairs)) }

// N returns the plural form of catalog message id that fits count.
func (v view) N(id string, count int, pairs ...any) string {
	data := dataOf(pairs)
	for k, val := range v.data {
		if _, ok := data[k]; !ok {
			data[k] = val
		}
	}
	return v.lang.N(id, count, data)
}

func dataOf(pairs []any) map[string]any {
	data := make(map[string]any, len(pairs)/2+4)
	for i := 0; i+1 < len(pairs); i += 2 {
		data[fmt.Sprint(pairs[i])] = pairs[i+1]
	}
	return data
}

// rejectionCodes are the reasons of a rejection that are not the
// organisers' own words.
var rejectionCodes = []string{"", "full", "closed", "organizer"}

func (t *templates) view(l letter) view {
	code := emailLang(l.Locale)
	lang := t.langs[code]
	v := view{
		lang: lang, Lang: code, Kind: l.Kind, Status: l.Status, Reason: strings.TrimSpace(l.Reason),
		Name: oneLine(l.Name), Title: oneLine(l.Title), Online: l.online(),
		VenueName: oneLine(l.VenueName), VenueAddress: oneLine(l.VenueAddress),
		ManageURL: cleanURL(l.ManageURL), EventURL: cleanURL(l.EventURL), AgendaURL: cleanURL(l.AgendaURL),
		UnsubscribeURL: cleanURL(l.UnsubscribeURL), Invite: invites(l),
		Subject: oneLine(l.Subject), In: reminderIn(lang, l.Offset),
	}
	// Join links are for online attendees whose seat is confirmed; a letter
	// that leaves Status empty (reminders, notices) goes to them only.
	joins := v.Online && (l.Status == "" || l.Status == events.StatusConfirmed)
	if joins {
		v.JoinURL = cleanURL(l.JoinURL)
	}
	if l.Kind == kindRejected && !slices.Contains(rejectionCodes, v.Reason) {
		v.Note = collapse(v.Reason)
	}
	v.Mode = lang.T("email.mode_in_person")
	if v.Online {
		v.Mode = lang.T("email.mode_online")
	}
	v.data = map[string]any{"Title": v.Title, "Name": v.Name, "Mode": v.Mode, "In": v.In, "Subject": v.Subject}
	switch v.Signature = oneLine(l.Signature); {
	case v.Signature != "":
	case t.signature != "":
		v.Signature = t.signature
	default:
		v.Signature = v.T("email.signature")
	}

	eventLoc := i18n.ZoneOrUTC(l.EventZone)
	var localLoc *time.Location
	if v.Online && l.LocalZone != "" && l.LocalZone != l.EventZone {
		if loc, err := i18n.LoadZone(l.LocalZone); err == nil {
			localLoc = loc
		}
	}
	if !l.EventStart.IsZero() {
		v.When = span(lang, l.EventStart, l.EventEnd, eventLoc)
		if localLoc != nil {
			if local := span(lang, l.EventStart, l.EventEnd, localLoc); local != v.When {
				v.LocalWhen, v.LocalZone = local, l.LocalZone
			}
		}
	}
	sessions := slices.Clone(l.Sessions)
	slices.SortStableFunc(sessions, func(a, b sessionLine) int { return a.Start.Compare(b.Start) })
	day := ""
	for _, s := range sessions {
		sv := v.session(s, eventLoc, localLoc, joins)
		if sv.Day == day {
			sv.Day = ""
		} else {
			day = sv.Day
		}
		v.Sessions = append(v.Sessions, sv)
	}
	v.Body, v.Paragraphs = body(l.Body)
	return v
}

// reminderIn says how long before the start a reminder goes out, e.g. "in
// 24 hours"; "" for none.
func reminderIn(lang *i18n.Localizer, d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d <= 0:
		return ""
	case d%day == 0 && d >= 2*day: // "in 24 hours" rather than "in 1 day"
		return lang.N("email.reminder.in_days", int(d/day), nil)
	case d%time.Hour == 0:
		return lang.N("email.reminder.in_hours", int(d/time.Hour), nil)
	}
	return lang.N("email.reminder.in_minutes", int((d+time.Minute-1)/time.Minute), nil)
}

func (v view) session(s sessionLine, eventLoc, localLoc *time.Location, joins bool) sessionView {
	sv := sessionView{Title: oneLine(s.Title)}
	if !s.Start.IsZero() {
		sv.Day, sv.When = v.lang.Date(s.Start, eventLoc), clock(v.lang, s.Start, s.End, eventLoc)
		if localLoc != nil {
			local := clock(v.lang, s.Start, s.End, localLoc)
			if v.lang.Date(s.Start, localLoc) != sv.Day {
				local = span(v.lang, s.Start, s.End, localLoc)
			}
			if local != sv.When {
				sv.LocalWhen = local
			}
		}
	}
	if !v.Online {
		sv.Room = oneLine(s.Room)
	}
	cancelled := s.Cancelled || slices.Contains(s.Kinds, events.ChangeCancelled)
	if joins && !cancelled {
		sv.JoinURL = cleanURL(s.JoinURL)
	}
	if v.Kind != kindAgenda {
		return sv
	}
	switch {
	case cancelled:
		sv.Mark = v.T("email.agenda_changed.cancelled")
	case slices.Contains(s.Kinds, events.ChangeAdded):
		sv.Mark = v.T("email.agenda_changed.added")
	default:
		sv.Mark = v.T("email.agenda_changed.changed")
		sv.Changes = v.changes(s, eventLoc)
	}
	return sv
}

// changeWords name the changes a notice cannot show as old → new.
var changeWords = map[string]string{
	events.ChangeMoved: "agenda.change_time", events.ChangeRelocated: "agenda.change_room",
	events.ChangeRenamed: "agenda.change_title",
}

// changes says what changed in a session, old → new where the notice has
// the session as it was.
func (v view) changes(s sessionLine, loc *time.Location) []string {
	var out, vague []string
	b := s.Before
	for _, k := range s.Kinds {
		switch {
		case k == events.ChangeMoved && b != nil && !b.StartsAt.IsZero():
			was, now := span(v.lang, b.StartsAt, b.EndsAt, loc), span(v.lang, s.Start, s.End, loc)
			if v.lang.Date(b.StartsAt, loc) == v.lang.Date(s.Start, loc) { // the day heads the session
				was, now = clock(v.lang, b.StartsAt, b.EndsAt, loc), clock(v.lang, s.Start, s.End, loc)
			}
			out = append(out, v.T("email.agenda_changed.time", "Before", was, "After", now))
		case k == events.ChangeRelocated && b != nil:
			out = append(out, v.T("email.agenda_changed.room", "Before", orDash(oneLine(b.Room)), "After", orDash(oneLine(s.Room))))
		case k == events.ChangeRenamed && b != nil:
			out = append(out, v.T("email.agenda_changed.renamed", "Before", oneLine(b.Title)))
		case k == events.ChangeSpeakers:
			out = append(out, v.T("email.agenda_changed.speakers"))
		case k == events.ChangeFormat && slices.Contains([]string{events.FormatInPerson, events.FormatOnline, events.FormatHybrid}, s.Format):
			out = append(out, v.T("email.agenda_changed.format", "Format", v.T("agenda.format_"+s.Format)))
		case k == events.ChangeLink:
			out = append(out, v.T("email.agenda_changed.link"))
		case k == events.ChangeDetails:
			out = append(out, v.T("email.agenda_changed.details"))
		case changeWords[k] != "":
			vague = append(vague, v.T(changeWords[k]))
		}
	}
	if len(vague) > 0 {
		out = append(out, v.T("email.agenda_changed.what", "What", strings.Join(vague, ", ")))
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// body keeps an organiser's message as written, its lines and paragraphs,
// without control characters: the text, and its paragraphs for HTML.
func body(s string) (string, [][]string) {
	var paras [][]string
	var cur []string
	for line := range strings.SplitSeq(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n"), "\n") {
		line = strings.TrimRight(plain(line), " ")
		if strings.TrimSpace(line) == "" {
			if cur != nil {
				paras, cur = append(paras, cur), nil
			}
			continue
		}
		cur = append(cur, line)
	}
	if cur != nil {
		paras = append(paras, cur)
	}
	texts := make([]string, len(paras))
	for i, p := range paras {
		texts[i] = strings.Join(p, "\n")
	}
	return strings.Join(texts, "\n\n"), paras
}
