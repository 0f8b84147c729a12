package notification

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htemplate "html/template"
	"strings"
	ttemplate "text/template"
	"time"
	_ "time/tzdata" // zones work in scratch images, which have no zoneinfo

	ics "github.com/arran4/golang-ical"

	"github.com/plenaryhq/plenary/pkg/events"
)

// templateFiles holds, per locale, <code>.txt.tmpl (subjects and text parts,
// text/template) and <code>.html.tmpl (HTML parts, html/template, which
// escapes participants' text). Each kind defines "<kind>.subject",
// "<kind>.text" and "<kind>.html".
//
//go:embed templates/*.tmpl
var templateFiles embed.FS

// fallbackLocale is used for a participant's locale, or a kind, that has no
// templates yet.
const fallbackLocale = "en"

// icsContentType is the calendar invite's content type.
const icsContentType = "text/calendar; charset=utf-8; method=PUBLISH"

// calendarNames are a language's names of weekdays (from Sunday) and months.
type calendarNames struct {
	weekdays [7]string
	months   [12]string
}

// localeNames lists the locales emails can be written in. Adding one takes
// its names here and its two template files.
func localeNames() map[string]calendarNames {
	return map[string]calendarNames{
		"en": {
			weekdays: [7]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"},
			months: [12]string{"January", "February", "March", "April", "May", "June", "July",
				"August", "September", "October", "November", "December"},
		},
	}
}

type locale struct {
	code  string
	names calendarNames
	text  *ttemplate.Template
	html  *htemplate.Template
}

func (l *locale) has(kind string) bool {
	return l.text.Lookup(kind+".subject") != nil && l.text.Lookup(kind+".text") != nil &&
		l.html.Lookup(kind+".html") != nil
}

// templates renders emails in the participant's locale.
type templates struct {
	locales   map[string]*locale
	signature string
}

func newTemplates(fromName string) (*templates, error) {
	t := &templates{locales: map[string]*locale{}, signature: oneLine(fromName)}
	for code, names := range localeNames() {
		text, err := ttemplate.ParseFS(templateFiles, "templates/"+code+".txt.tmpl")
		if err != nil {
			return nil, err
		}
		html, err := htemplate.ParseFS(templateFiles, "templates/"+code+".html.tmpl")
		if err != nil {
			return nil, err
		}
		t.locales[code] = &locale{code: code, names: names, text: text, html: html}
	}
	fb, ok := t.locales[fallbackLocale]
	if !ok {
		return nil, errors.New("no templates for the fallback locale " + fallbackLocale)
	}
	for _, kind := range []string{kindConfirmation, kindWaitlisted, kindPending, kindRejected, kindDuplicate,
		kindPromoted, kindCancelled, kindSwitched, kindLinks} {
		if !fb.has(kind) {
			return nil, fmt.Errorf("%s templates lack %s.subject, %s.text or %s.html", fallbackLocale, kind, kind, kind)
		}
	}
	return t, nil
}

// pick returns the locale to write kind in: the participant's ("de-AT", then
// "de"), else the fallback.
func (t *templates) pick(code, kind string) *locale {
	code = strings.ToLower(strings.ReplaceAll(code, "_", "-"))
	base, _, _ := strings.Cut(code, "-")
	for _, c := range []string{code, base} {
		if l, ok := t.locales[c]; ok && l.has(kind) {
			return l
		}
	}
	return t.locales[fallbackLocale]
}

// mailData is what the templates see. Every string is plain text; the HTML
// templates escape it.
type mailData struct {
	Name  string
	Title string
	// Online is true for an online attendee.
	Online bool
	// When is the event's time in its own zone; LocalWhen the same in an
	// online attendee's zone (LocalZone) when that reads differently.
	When, LocalWhen, LocalZone string
	VenueName, VenueAddress    string
	ManageURL, JoinURL         string
	EventURL                   string
	// Reason is why a registration was rejected: "full", "closed" or the
	// organizers' words.
	Reason string
	// Status is the standing registration's status, for a duplicate attempt.
	Status    string
	Signature string
}

// rendered is one email, ready to be recorded and sent.
type rendered struct {
	subject, text, html, toName string
	attachments                 []attachment
}

// render writes the email of kind for reg. stamp is when the triggering
// message was produced (the invite's DTSTAMP).
func (t *templates) render(kind string, reg events.Registration, stamp time.Time) (rendered, error) {
	l := t.pick(reg.Locale, kind)
	data := t.data(l, reg)
	var out rendered
	var b bytes.Buffer
	if err := l.text.ExecuteTemplate(&b, kind+".subject", data); err != nil {
		return out, err
	}
	out.subject = oneLine(b.String())
	b.Reset()
	if err := l.text.ExecuteTemplate(&b, kind+".text", data); err != nil {
		return out, err
	}
	out.text = tidyText(b.String())
	b.Reset()
	if err := l.html.ExecuteTemplate(&b, kind+".html", data); err != nil {
		return out, err
	}
	out.html = b.String()
	out.toName = data.Name
	if (kind == kindConfirmation || kind == kindPromoted) && !reg.Event.StartsAt.IsZero() {
		ical, err := invite(reg, stamp)
		if err != nil {
			return out, err
		}
		out.attachments = []attachment{{Name: "invite.ics", ContentType: icsContentType, Data: ical}}
	}
	return out, nil
}

func (t *templates) data(l *locale, reg events.Registration) mailData {
	ev := reg.Event
	d := mailData{
		Name:         oneLine(reg.Name),
		Title:        oneLine(ev.Title),
		Online:       reg.Mode == events.ModeOnline,
		VenueName:    oneLine(ev.Venue.Name),
		VenueAddress: oneLine(ev.Venue.Address),
		ManageURL:    oneLine(reg.ManageURL),
		JoinURL:      oneLine(reg.JoinURL),
		EventURL:     oneLine(ev.PublicURL),
		Reason:       strings.TrimSpace(reg.Reason),
		Status:       reg.Status,
		Signature:    t.signature,
	}
	if !d.Online {
		d.JoinURL = ""
	}
	if ev.StartsAt.IsZero() {
		return d
	}
	d.When = l.span(ev.StartsAt, ev.EndsAt, zone(ev.Timezone))
	if d.Online && reg.Timezone != "" && reg.Timezone != ev.Timezone {
		if loc, err := time.LoadLocation(reg.Timezone); err == nil {
			if local := l.span(ev.StartsAt, ev.EndsAt, loc); local != d.When {
				d.LocalWhen, d.LocalZone = local, reg.Timezone
			}
		}
	}
	return d
}

// zone loads an IANA zone; an unknown or empty one reads as UTC rather than
// costing the participant the email.
func zone(name string) *time.Location {
	if loc, err := time.LoadLocation(name); err == nil && name != "" {
		return loc
	}
	return time.UTC
}

// span formats an event's time, e.g. "Monday 9 November 2020, 09:00–17:30
// CET", naming both days when it spans several.
func (l *locale) span(start, end time.Time, loc *time.Location) string {
	s, e := start.In(loc), end.In(loc)
	first := l.day(s) + ", " + s.Format("15:04")
	switch {
	case end.IsZero() || !e.After(s):
		return first + " " + s.Format("MST")
	case s.YearDay() == e.YearDay() && s.Year() == e.Year():
		return first + "–" + e.Format("15:04 MST")
	case s.Format("MST") != e.Format("MST"):
		return first + " " + s.Format("MST") + " – " + l.day(e) + ", " + e.Format("15:04 MST")
	}
	return first + " – " + l.day(e) + ", " + e.Format("15:04 MST")
}

func (l *locale) day(t time.Time) string {
	return fmt.Sprintf("%s %d %s %d", l.names.weekdays[t.Weekday()], t.Day(), l.names.months[t.Month()-1], t.Year())
}

// invite is the confirmation's calendar file.
func invite(reg events.Registration, stamp time.Time) ([]byte, error) {
	ev := reg.Event
	if stamp.IsZero() {
		stamp = time.Now()
	}
	cal := ics.NewCalendarFor("Plenary")
	cal.SetMethod(ics.MethodPublish)
	vev := cal.AddEvent(oneLine(reg.ID) + "@plenary")
	vev.SetDtStampTime(stamp)
	vev.SetSequence(int(reg.Version))
	vev.SetStartAt(ev.StartsAt)
	if ev.EndsAt.After(ev.StartsAt) {
		vev.SetEndAt(ev.EndsAt)
	}
	vev.SetSummary(oneLine(ev.Title))
	location := "Online"
	if reg.Mode != events.ModeOnline {
		location = joinNonEmpty(", ", oneLine(ev.Venue.Name), oneLine(ev.Venue.Address))
	}
	if location != "" {
		vev.SetLocation(location)
	}
	// Calendar entries get shared (with an assistant, a delegation), so the
	// invite carries the public event page, never the personal manage link.
	if ev.PublicURL != "" {
		vev.SetDescription("Event page: " + oneLine(ev.PublicURL))
		vev.SetURL(oneLine(ev.PublicURL))
	}
	var b bytes.Buffer
	if err := cal.SerializeTo(&b, ics.WithNewLineWindows); err != nil { // RFC 5545 lines end in CRLF
		return nil, fmt.Errorf("invite.ics: %w", err)
	}
	return b.Bytes(), nil
}

func joinNonEmpty(sep string, parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, sep)
}

// oneLine makes s fit a header or a single line: control characters (CR and
// LF above all) become spaces, runs of spaces one, and it is cut to 200
// characters.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\u0085' {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200])
	}
	return s
}

// tidyText drops the trailing spaces and repeated blank lines that template
// actions leave behind.
func tidyText(s string) string {
	var out []string
	for line := range strings.SplitSeq(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		line = strings.TrimRight(line, " \t")
		if line == "" && (len(out) == 0 || out[len(out)-1] == "") {
			continue
		}
		out = append(out, line)
	}
	return strings.TrimSpace(strings.Join(out, "\n")) + "\n"
}
