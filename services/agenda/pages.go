package agenda

import (
	"cmp"
	"embed"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/web"
)

// The agenda page is server-rendered and works without JavaScript: the
// language comes from ?lang= or Accept-Language, the time zone from ?tz=
// (the event's own by default), and the marks from the latest release's
// difference from the one before.

//go:embed templates/*.html
var templateFiles embed.FS

var pageTemplates = template.Must(template.ParseFS(templateFiles, "templates/*.html"))

// foldAbstract is the length from which an abstract folds into <details>,
// so that a phone shows the day's sessions rather than one abstract.
const foldAbstract = 280

// agendaPage is what the templates see.
type agendaPage struct {
	L     *i18n.Localizer
	Title string
	Langs []langLink

	// Message pages.
	Detail string
	Back   string

	// The agenda.
	Event   *events.Event
	Release releaseView
	Zone    zoneView
	Changed []changedLink
	Days    []dayView
	Links   feedLinks
}

// T translates id with data given as name, value pairs.
func (p *agendaPage) T(id string, pairs ...any) string { return p.L.Tf(id, pairs...) }

// langLink switches the page's language and keeps the rest of the query.
type langLink struct{ Code, Name, Href string }

type releaseView struct {
	Version   int
	Published string
	Note      string
	// Summary says how many sessions changed since the release before.
	Summary string
}

type zoneView struct {
	Name    string // the zone times are in
	Event   string // the event's zone
	Chosen  bool   // times are in the reader's ?tz=
	Unknown bool   // ?tz= named no zone
	Zones   []string
	// Back is the page in the event's zone.
	Back string
}

type changedLink struct{ ID, Title, Mark, Label string }

type dayView struct {
	ID, Date, Count string
	Sessions        []sessionView
}

type sessionView struct {
	ID, Title           string
	Start               string // RFC 3339, for <time datetime>
	When                string
	Format, Room, Track string
	Abstract            string
	Fold                bool
	Speakers            []events.Speaker
	Mark, Label         string // "new", "changed" or "cancelled", and its words
	Changes             []string
}

type feedLinks struct {
	ICS, Feed, Changes, Event string
	// Webcal opens the feed in the device's calendar app. html/template
	// does not trust the scheme, so it is built from the parsed PUBLIC_URL.
	Webcal template.URL
}

// pageAgenda is the public agenda page, /e/{slug}/agenda.
func (a *agenda) pageAgenda(c *fiber.Ctx) error {
	c.Vary(fiber.HeaderAcceptLanguage)
	ev, rel, err := a.latestPublic(c)
	l := a.catalog.For(i18n.Negotiate(c.Query("lang"), "", c.Get(fiber.HeaderAcceptLanguage), locales(ev)))
	if err != nil {
		return a.agendaProblem(c, l, ev, err)
	}
	p := &agendaPage{L: l, Event: ev, Langs: langLinks(c, ev), Links: a.feedLinks(ev.Slug)}
	p.Title = l.T("agenda.page_title", map[string]any{"Event": ev.Title})
	loc := p.zone(c, ev, rel)
	p.release(rel, loc)
	p.days(rel, loc)
	c.Set(fiber.HeaderCacheControl, "public, max-age=60")
	return renderPage(c, http.StatusOK, "agenda", p)
}

// agendaProblem shows a 404 as a page in the reader's language: the event
// is unknown, or its agenda is not published yet.
func (a *agenda) agendaProblem(c *fiber.Ctx, l *i18n.Localizer, ev *events.Event, err error) error {
	prob, ok := web.AsProblem(err)
	if !ok || prob.Status != http.StatusNotFound {
		return err
	}
	p := &agendaPage{L: l, Langs: langLinks(c, ev)}
	if ev != nil && prob.Type == web.ProblemBase+"no_release" {
		p.Title = l.T("agenda.not_published_title")
		p.Detail = l.T("agenda.not_published_body", map[string]any{"Event": ev.Title})
		p.Back = "/e/" + ev.Slug
	} else {
		p.Title, p.Detail = l.T("page.not_found"), l.T("agenda.unknown_event")
	}
	// The agenda should show as soon as it is published, not a minute later.
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return renderPage(c, http.StatusNotFound, "message", p)
}

func renderPage(c *fiber.Ctx, status int, name string, p *agendaPage) error {
	c.Type("html", "utf-8")
	c.Status(status)
	return pageTemplates.ExecuteTemplate(c, name, p)
}

// locales are the languages the page may be in: the event's, or all of
// them (nil) when the event is unknown.
func locales(ev *events.Event) []string {
	if ev == nil {
		return nil
	}
	return ev.Locales
}

// langLinks offers the event's languages, each link keeping the rest of the
// query (the time zone); one language needs no switch.
func langLinks(c *fiber.Ctx, ev *events.Event) []langLink {
	var out []langLink
	for _, code := range i18n.Supported {
		if i18n.Negotiate(code, "", "", locales(ev)) == code {
			out = append(out, langLink{Code: code, Name: i18n.Names[code], Href: requery(c, "", "lang", code)})
		}
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// requery is path with the page's query, key set to value (removed when
// value is empty).
func requery(c *fiber.Ctx, path, key, value string) string {
	q, _ := url.ParseQuery(string(c.Request().URI().QueryString()))
	if value == "" {
		q.Del(key)
	} else {
		q.Set(key, value)
	}
	if enc := q.Encode(); enc != "" {
		return path + "?" + enc
	}
	return path
}

// zone picks the zone times are shown in: the reader's ?tz= when it names
// one, else the event's.
func (p *agendaPage) zone(c *fiber.Ctx, ev *events.Event, rel *events.Release) *time.Location {
	name := cmp.Or(ev.Timezone, rel.Timezone)
	loc, err := i18n.LoadZone(name)
	if err != nil {
		name, loc = "UTC", time.UTC
	}
	p.Zone = zoneView{Name: name, Event: name, Zones: i18n.Zones(),
		Back: requery(c, "/e/"+ev.Slug+"/agenda", "tz", "")}
	tz := strings.TrimSpace(c.Query("tz"))
	if tz == "" || tz == name {
		return loc
	}
	viewer, err := i18n.LoadZone(tz)
	if err != nil {
		p.Zone.Unknown = true
		return loc
	}
	p.Zone.Name, p.Zone.Chosen = tz, true
	if !slices.Contains(p.Zone.Zones, tz) {
		p.Zone.Zones = append(p.Zone.Zones, tz) // a browser's zone the list lacks
	}
	return viewer
}

// release describes the release and lists the sessions it changed. The
// first release marks nothing: every session in it is new.
func (p *agendaPage) release(rel *events.Release, loc *time.Location) {
	p.Release = releaseView{Version: rel.Version, Note: rel.Note, Published: p.L.DateTime(rel.PublishedAt, loc)}
	if rel.Previous == 0 {
		return
	}
	for _, ch := range rel.Changes {
		if s := rel.Session(ch.SessionID); s != nil {
			mark, label := p.mark(s, ch)
			p.Changed = append(p.Changed, changedLink{ID: s.ID, Title: s.Title, Mark: mark, Label: label})
		}
	}
	if len(p.Changed) > 0 {
		p.Release.Summary = p.L.N("agenda.changed_since", len(p.Changed), map[string]any{"Previous": rel.Previous})
	}
}

// mark is how the page flags a session the release changed.
func (p *agendaPage) mark(s *events.Session, ch events.SessionChange) (mark, label string) {
	switch {
	case s.Cancelled:
		return "cancelled", p.L.T("agenda.mark_cancelled")
	case ch.Has(events.ChangeAdded):
		return "new", p.L.T("agenda.mark_new")
	}
	return "changed", p.L.T("agenda.mark_changed")
}

// days groups the sessions (in agenda order) by their day in loc.
func (p *agendaPage) days(rel *events.Release, loc *time.Location) {
	changes := map[string]events.SessionChange{}
	if rel.Previous > 0 {
		for _, ch := range rel.Changes {
			changes[ch.SessionID] = ch
		}
	}
	var live []int
	for i := range rel.Sessions {
		s := &rel.Sessions[i]
		start := s.StartsAt.In(loc)
		id := "d-" + start.Format(time.DateOnly)
		if n := len(p.Days); n == 0 || p.Days[n-1].ID != id {
			p.Days = append(p.Days, dayView{ID: id, Date: p.L.Date(start, nil)})
			live = append(live, 0)
		}
		day := &p.Days[len(p.Days)-1]
		day.Sessions = append(day.Sessions, p.session(s, changes, loc))
		if !s.Cancelled {
			live[len(live)-1]++
		}
	}
	for i := range p.Days {
		p.Days[i].Count = p.L.N("agenda.day_sessions", live[i], nil)
	}
}

func (p *agendaPage) session(s *events.Session, changes map[string]events.SessionChange, loc *time.Location) sessionView {
	v := sessionView{
		ID: s.ID, Title: s.Title, When: p.span(s.StartsAt, s.EndsAt, loc),
		Start:  s.StartsAt.In(loc).Format(time.RFC3339),
		Format: p.format(s.Format), Room: s.Room, Track: s.Track, Speakers: s.Speakers,
		Abstract: s.Abstract, Fold: utf8.RuneCountInString(s.Abstract) > foldAbstract || strings.Count(s.Abstract, "\n") > 3,
	}
	ch, changed := changes[s.ID]
	if changed || s.Cancelled {
		v.Mark, v.Label = p.mark(s, ch)
	}
	if v.Mark == "changed" {
		v.Changes = p.notes(ch, loc)
	}
	return v
}

// notes says what changed in a session, with the old value where it helps
// someone who planned around it.
func (p *agendaPage) notes(ch events.SessionChange, loc *time.Location) []string {
	b, a := ch.Before, ch.After
	if b == nil || a == nil {
		return nil
	}
	var out []string
	note := func(what, was string) {
		text := p.L.T("agenda.change_" + what)
		if was != "" {
			text += " (" + p.L.T("agenda.was", map[string]any{"Value": was}) + ")"
		}
		out = append(out, text)
	}
	for _, kind := range ch.Kinds {
		switch kind {
		case events.ChangeMoved:
			was := p.span(b.StartsAt, b.EndsAt, loc)
			if b.StartsAt.In(loc).Format(time.DateOnly) != a.StartsAt.In(loc).Format(time.DateOnly) {
				was = p.L.Date(b.StartsAt, loc) + ", " + was
			}
			note("time", was)
		case events.ChangeRelocated:
			note("room", b.Room)
		case events.ChangeRenamed:
			note("title", b.Title)
		case events.ChangeSpeakers:
			note("speakers", "")
		case events.ChangeFormat:
			note("format", p.format(b.Format))
		case events.ChangeLink:
			note("link", "") // never the URL: it is the participants' way in
		case events.ChangeDetails:
			note("details", "")
		}
	}
	return out
}

// span is a session's time in loc, "09:00–10:30 CET", with the end's date
// when it ends on another day.
func (p *agendaPage) span(start, end time.Time, loc *time.Location) string {
	s, e := start.In(loc), end.In(loc)
	from, to := p.L.Time(s, nil), p.L.Time(e, nil)
	if s.Format(time.DateOnly) != e.Format(time.DateOnly) {
		return from + " – " + p.L.DateTime(e, nil)
	}
	if clock, zone, ok := strings.Cut(from, " "); ok && strings.HasSuffix(to, " "+zone) {
		return clock + "–" + to
	}
	return from + " – " + to
}

func (p *agendaPage) format(f string) string {
	switch f {
	case events.FormatInPerson, events.FormatOnline, events.FormatHybrid:
		return p.L.T("agenda.format_" + f)
	}
	return ""
}

// feedLinks are the agenda's other forms: calendar feed, changelog, and
// the event's page.
func (a *agenda) feedLinks(slug string) feedLinks {
	feed := url.URL{Scheme: a.public.Scheme, Host: a.public.Host,
		Path: strings.TrimRight(a.public.Path, "/") + "/api/events/" + slug + "/agenda.ics"}
	webcal := feed
	webcal.Scheme = "webcal"
	return feedLinks{
		ICS: "/api/events/" + slug + "/agenda.ics", Feed: feed.String(), Webcal: template.URL(webcal.String()),
		Changes: "/api/events/" + slug + "/agenda/changes", Event: "/e/" + slug,
	}
}
