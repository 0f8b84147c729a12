package notification

import (
	"bytes"
	"embed"
	"fmt"
	htemplate "html/template"
	"slices"
	"strings"
	ttemplate "text/template"
	"time"
	_ "time/tzdata" // zones work in scratch images, which have no zoneinfo
	"unicode"

	ics "github.com/arran4/golang-ical"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
)

// templateFiles holds one template set for every language: mail.txt.tmpl
// (subjects and text parts, text/template) and mail.html.tmpl (HTML parts,
// html/template, which escapes participants' and organisers' text). Each
// kind defines "<kind>.subject", "<kind>.text" and "<kind>.html"; the words
// come from the shared catalogs (pkg/i18n, the [email] tables).
//
//go:embed templates/*.tmpl
var templateFiles embed.FS

// icsContentType is the calendar invite's content type.
const icsContentType = "text/calendar; charset=utf-8; method=PUBLISH"

// templates renders emails in the recipient's language.
type templates struct {
	text      *ttemplate.Template
	html      *htemplate.Template
	langs     map[string]*i18n.Localizer // by code, one per i18n.Supported
	signature string                     // MAIL_FROM_NAME, if set
}

// newTemplates parses the embedded templates and checks that every kind has
// its three parts.
func newTemplates(fromName string) (*templates, error) {
	catalog, err := i18n.New()
	if err != nil {
		return nil, err
	}
	t := &templates{langs: map[string]*i18n.Localizer{}, signature: oneLine(fromName)}
	for _, code := range i18n.Supported {
		t.langs[code] = catalog.For(code)
	}
	if t.text, err = ttemplate.ParseFS(templateFiles, "templates/mail.txt.tmpl"); err != nil {
		return nil, err
	}
	if t.html, err = htemplate.ParseFS(templateFiles, "templates/mail.html.tmpl"); err != nil {
		return nil, err
	}
	for _, kind := range allKinds {
		if t.text.Lookup(kind+".subject") == nil || t.text.Lookup(kind+".text") == nil || t.html.Lookup(kind+".html") == nil {
			return nil, fmt.Errorf("templates lack %s.subject, %s.text or %s.html", kind, kind, kind)
		}
	}
	return t, nil
}

// allKinds lists every kind of email there are templates for.
var allKinds = []string{kindConfirmation, kindWaitlisted, kindPending, kindApproved, kindRejected, kindDuplicate,
	kindPromoted, kindCancelled, kindSwitched, kindLinks, kindReminder, kindAgenda, kindAnnouncement}

// emailLang returns the language to write to someone in: theirs ("de-AT"
// gives "de") if Plenary speaks it, else the event's first that it speaks,
// else English.
func emailLang(participant string, eventLocales ...string) string {
	for _, tag := range append([]string{participant}, eventLocales...) {
		base, _, _ := strings.Cut(strings.ToLower(strings.ReplaceAll(strings.TrimSpace(tag), "_", "-")), "-")
		if slices.Contains(i18n.Supported, base) {
			return base
		}
	}
	return i18n.Supported[0]
}

// renderRegistration writes the email of kind that a registration event
// calls for, with the calendar invite where it belongs. stamp is when the
// triggering message was produced (the invite's DTSTAMP).
func (t *templates) renderRegistration(kind string, reg events.Registration, stamp time.Time) (rendered, error) {
	l := letterFor(kind, reg)
	out, err := t.render(l)
	if err != nil || !invites(l) {
		return out, err
	}
	ical, err := invite(reg, stamp)
	if err != nil {
		return out, err
	}
	out.attachments = []attachment{{Name: "invite.ics", ContentType: icsContentType, Data: ical}}
	return out, nil
}

// invites reports whether the letter comes with the event's calendar
// invite (and says so): a confirmed seat, for an event that has a time.
func invites(l letter) bool {
	switch l.Kind {
	case kindConfirmation, kindPromoted, kindApproved:
		return l.Status == events.StatusConfirmed && !l.EventStart.IsZero()
	}
	return false
}

// letterFor is the letter a registration event calls for: the
// registration's recipient, event and links. The join link goes only to a
// confirmed online attendee.
func letterFor(kind string, reg events.Registration) letter {
	ev := reg.Event
	l := letter{
		Kind: kind, Locale: emailLang(reg.Locale, ev.Locales...),
		To: strings.TrimSpace(reg.Email), Name: reg.Name,
		Title: ev.Title, EventStart: ev.StartsAt, EventEnd: ev.EndsAt, EventZone: ev.Timezone,
		VenueName: ev.Venue.Name, VenueAddress: ev.Venue.Address, EventURL: ev.PublicURL,
		Mode: reg.Mode, LocalZone: reg.Timezone, Status: reg.Status, Reason: reg.Reason,
		ManageURL: reg.ManageURL,
	}
	if ev.PublicURL != "" {
		l.AgendaURL = strings.TrimRight(ev.PublicURL, "/") + "/agenda"
	}
	if reg.Mode == events.ModeOnline && reg.Status == events.StatusConfirmed {
		l.JoinURL = reg.JoinURL
	}
	return l
}

// rendered is one email, ready to be recorded and sent.
type rendered struct {
	subject, text, html, toName string
	attachments                 []attachment
}

// render writes one email from its letter, in the letter's language
// (emailLang). It attaches nothing: callers add calendar files.
func (t *templates) render(l letter) (rendered, error) {
	v := t.view(l)
	var out rendered
	var b bytes.Buffer
	if err := t.text.ExecuteTemplate(&b, l.Kind+".subject", v); err != nil {
		return out, fmt.Errorf("%s subject: %w", l.Kind, err)
	}
	out.subject = oneLine(b.String())
	b.Reset()
	if err := t.text.ExecuteTemplate(&b, l.Kind+".text", v); err != nil {
		return out, fmt.Errorf("%s text: %w", l.Kind, err)
	}
	out.text = tidyText(b.String())
	b.Reset()
	if err := t.html.ExecuteTemplate(&b, l.Kind+".html", v); err != nil {
		return out, fmt.Errorf("%s html: %w", l.Kind, err)
	}
	out.html = b.String()
	out.toName = v.Name
	return out, nil
}

// span formats an event's or session's time in lang, e.g. "Monday 9
// November 2020, 09:00–17:30 CET", naming both days when it spans several.
func span(lang *i18n.Localizer, start, end time.Time, loc *time.Location) string {
	s, e := start.In(loc), end.In(loc)
	first := lang.Date(s, nil) + ", " + s.Format("15:04")
	switch {
	case end.IsZero() || !e.After(s):
		return lang.DateTime(s, nil)
	case s.YearDay() == e.YearDay() && s.Year() == e.Year():
		return first + "–" + lang.Time(e, nil)
	case zoneAbbr(s) != zoneAbbr(e): // summer time begins or ends
		return lang.DateTime(s, nil) + " – " + lang.DateTime(e, nil)
	}
	return first + " – " + lang.DateTime(e, nil)
}

// clock formats a session's time of day, e.g. "09:00–10:30 CET"; the whole
// span when it ends on another day.
func clock(lang *i18n.Localizer, start, end time.Time, loc *time.Location) string {
	s, e := start.In(loc), end.In(loc)
	switch {
	case end.IsZero() || !e.After(s):
		return lang.Time(s, nil)
	case s.YearDay() != e.YearDay() || s.Year() != e.Year() || zoneAbbr(s) != zoneAbbr(e):
		return span(lang, start, end, loc)
	}
	return s.Format("15:04") + "–" + lang.Time(e, nil)
}

func zoneAbbr(t time.Time) string {
	name, _ := t.Zone()
	return name
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
	if u := cleanURL(ev.PublicURL); u != "" {
		vev.SetDescription("Event page: " + u)
		vev.SetURL(u)
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
	s = collapse(s)
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200])
	}
	return s
}

// collapse makes s one line of single spaces. Only ASCII spaces collapse:
// a French no-break space before a colon stays.
func collapse(s string) string {
	return strings.Join(strings.FieldsFunc(plain(s), func(r rune) bool { return r == ' ' }), " ")
}

// plain turns control characters, line and paragraph separators included,
// into spaces.
func plain(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\u0085' {
			return ' '
		}
		return r
	}, s)
}

// maxURL bounds a link; far above any PUBLIC_URL plus a token, and a link
// is never shortened below it, since a cut link does not work.
const maxURL = 4096

// cleanURL drops the spaces and control characters a link cannot hold (so
// it stays one line) and refuses an absurdly long one, but never cuts it.
func cleanURL(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return -1
		}
		return r
	}, s)
	if len(s) > maxURL {
		return ""
	}
	return s
}

// tidyText drops the trailing spaces and repeated blank lines that template
// actions leave behind. It never wraps lines, so links stay whole.
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
