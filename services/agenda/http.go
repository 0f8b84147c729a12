package agenda

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// routes lists the whole HTTP surface of the service.
func (a *agenda) routes(app *fiber.App) {
	admin := app.Group("/admin", web.Bearer(a.cfg.AdminTokens))
	admin.Post("/events/:id/sessions", a.handleCreateSession)
	admin.Patch("/events/:id/sessions/:sid", a.handlePatchSession)
	admin.Delete("/events/:id/sessions/:sid", a.handleDeleteSession)
	admin.Get("/events/:id/agenda/draft", a.handleDraft)
	admin.Get("/events/:id/agenda/draft/diff", a.handlePreview)
	admin.Post("/events/:id/agenda/releases", a.handlePublish)
	admin.Get("/events/:id/agenda/releases", a.handleAdminReleases)
	admin.Get("/events/:id/agenda/releases/:n", a.handleAdminRelease)

	app.Get("/api/events/:slug/agenda", a.handleLatest)
	app.Get("/api/events/:slug/agenda/releases/:n", a.handleRelease)
	app.Get("/api/events/:slug/agenda/changes", a.handleChanges)
	app.Get("/api/events/:slug/agenda.ics", a.handleICS)
	app.Get("/e/:slug/agenda", a.pageAgenda)
}

// eventByID is the event of an admin route, or a 404 naming it.
func (a *agenda) eventByID(c *fiber.Ctx) (*events.Event, error) {
	ev, err := a.events.byID(c.UserContext(), c.Params("id"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, web.NotFound("the agenda service does not know event " + strconv.Quote(c.Params("id")) +
			" (yet); if it was just created, try again in a moment")
	}
	return ev, err
}

// eventBySlug is the event of a public route.
func (a *agenda) eventBySlug(c *fiber.Ctx) (*events.Event, error) {
	ev, err := a.events.bySlug(c.UserContext(), c.Params("slug"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, web.NotFound("no event at this address; check the link you were given")
	}
	return ev, err
}

// draftView is the draft as organisers see it.
type draftView struct {
	EventID       string        `json:"event_id"`
	Event         *events.Event `json:"event"`
	Revision      int           `json:"revision"`
	LatestRelease int           `json:"latest_release"`
	Sessions      []flagged     `json:"sessions"`
	Warnings      []Warning     `json:"warnings"`
}

func (a *agenda) view(ctx context.Context, ev *events.Event, d *draft) (draftView, error) {
	latest, err := a.releases.published(ctx, ev.ID)
	if err != nil {
		return draftView{}, err
	}
	warnings := check(ev, d.Sessions)
	return draftView{EventID: ev.ID, Event: ev, Revision: d.N, LatestRelease: latest,
		Sessions: flag(d.Sessions, warnings), Warnings: nonNil(warnings)}, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// edit applies change to the event's newest draft and stores the result as
// the next revision, starting over when another edit got there first.
func (a *agenda) edit(c *fiber.Ctx, ev *events.Event, change func([]events.Session) ([]events.Session, error)) (*draft, error) {
	ctx := c.UserContext()
	for range attempts {
		d, err := a.drafts.latest(ctx, ev.ID)
		if err != nil {
			return nil, err
		}
		sessions, err := change(d.Sessions)
		if err != nil {
			return nil, err
		}
		events.SortSessions(sessions)
		next := &draft{EventID: ev.ID, N: d.N + 1, Sessions: sessions, By: web.Organizer(c), At: time.Now().UTC()}
		err = a.drafts.commit(ctx, next)
		if errors.Is(err, store.ErrDuplicate) {
			a.races.Inc()
			backoff(ctx)
			continue
		}
		return next, err
	}
	return nil, errBusy
}

// sessionResponse is a session with the draft's warnings about it.
type sessionResponse struct {
	flagged
	Warnings []Warning `json:"warnings"`
}

func (a *agenda) respondSession(c *fiber.Ctx, status int, ev *events.Event, d *draft, id string) error {
	warnings := check(ev, d.Sessions)
	var mine []Warning
	for _, w := range warnings {
		if slices.Contains(w.Sessions, id) {
			mine = append(mine, w)
		}
	}
	for _, f := range flag(d.Sessions, warnings) {
		if f.ID == id {
			return c.Status(status).JSON(sessionResponse{flagged: f, Warnings: nonNil(mine)})
		}
	}
	return web.NotFound("no session " + strconv.Quote(id))
}

func (a *agenda) handleCreateSession(c *fiber.Ctx) error {
	ev, err := a.eventByID(c)
	if err != nil {
		return err
	}
	f, err := decodeFields(c.Body())
	if err != nil {
		return err
	}
	id := strings.ToLower(events.NewID())
	s, err := f.session(ev, id, nil)
	if err != nil {
		return err
	}
	d, err := a.edit(c, ev, func(sessions []events.Session) ([]events.Session, error) {
		if len(sessions) >= maxSessions {
			return nil, web.Conflict("too_many_sessions", "an agenda holds at most "+strconv.Itoa(maxSessions)+" sessions")
		}
		return append(sessions, s), nil
	})
	if err != nil {
		return err
	}
	c.Location("/admin/events/" + ev.ID + "/sessions/" + id)
	return a.respondSession(c, http.StatusCreated, ev, d, id)
}

// sessionIDRE is what a session id looks like (a lowercase ULID), checked
// before an id from a path goes anywhere.
var sessionIDRE = regexp.MustCompile(`^[0-9a-z]{26}$`)

// sessionPath is the event and the session id of a session's route.
func (a *agenda) sessionPath(c *fiber.Ctx) (*events.Event, string, error) {
	ev, err := a.eventByID(c)
	if err != nil {
		return nil, "", err
	}
	id := c.Params("sid")
	if !sessionIDRE.MatchString(id) {
		return nil, "", web.NotFound("no session " + strconv.Quote(id) + " in this agenda")
	}
	return ev, id, nil
}

func (a *agenda) handlePatchSession(c *fiber.Ctx) error {
	ev, id, err := a.sessionPath(c)
	if err != nil {
		return err
	}
	patch := c.Body()
	d, err := a.edit(c, ev, func(sessions []events.Session) ([]events.Session, error) {
		i := indexOf(sessions, id)
		if i < 0 {
			return nil, web.NotFound("no session " + strconv.Quote(id) + " in this agenda's draft")
		}
		cur, err := json.Marshal(fieldsOf(sessions[i]))
		if err != nil {
			return nil, err
		}
		merged, err := mergePatch(cur, patch)
		if err != nil {
			return nil, err
		}
		f, err := decodeFields(merged)
		if err != nil {
			return nil, err
		}
		s, err := f.session(ev, id, &sessions[i])
		if err != nil {
			return nil, err
		}
		if reflect.DeepEqual(s, sessions[i]) {
			return nil, errUnchanged
		}
		sessions[i] = s
		return sessions, nil
	})
	if errors.Is(err, errUnchanged) {
		d, err = a.drafts.latest(c.UserContext(), ev.ID)
	}
	if err != nil {
		return err
	}
	return a.respondSession(c, http.StatusOK, ev, d, id)
}

func indexOf(sessions []events.Session, id string) int {
	for i := range sessions {
		if sessions[i].ID == id {
			return i
		}
	}
	return -1
}

func (a *agenda) handleDeleteSession(c *fiber.Ctx) error {
	ev, id, err := a.sessionPath(c)
	if err != nil {
		return err
	}
	_, err = a.edit(c, ev, func(sessions []events.Session) ([]events.Session, error) {
		i := indexOf(sessions, id)
		if i < 0 {
			return nil, web.NotFound("no session " + strconv.Quote(id) + " in this agenda's draft")
		}
		return append(sessions[:i], sessions[i+1:]...), nil
	})
	if err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

func (a *agenda) handleDraft(c *fiber.Ctx) error {
	ev, err := a.eventByID(c)
	if err != nil {
		return err
	}
	d, err := a.drafts.latest(c.UserContext(), ev.ID)
	if err != nil {
		return err
	}
	v, err := a.view(c.UserContext(), ev, d)
	if err != nil {
		return err
	}
	return c.JSON(v)
}

// handlePreview shows what publishing now would announce.
func (a *agenda) handlePreview(c *fiber.Ctx) error {
	ev, err := a.eventByID(c)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	prev, err := a.releases.latest(ctx, ev.ID, true)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	d, err := a.drafts.latest(ctx, ev.ID)
	if err != nil {
		return err
	}
	rel := nextRelease(ev, prev, d.Sessions, "", web.Organizer(c), time.Now())
	return c.JSON(fiber.Map{
		"version": rel.Version, "previous": rel.Previous, "draft_revision": d.N,
		"diff": nonNil(rel.Changes), "warnings": nonNil(check(ev, d.Sessions)),
	})
}

func (a *agenda) handlePublish(c *fiber.Ctx) error {
	ev, err := a.eventByID(c)
	if err != nil {
		return err
	}
	var body struct {
		Note string `json:"note"`
	}
	if len(c.Body()) > 0 {
		if err := decodeStrict(c.Body(), &body); err != nil {
			return err
		}
	}
	var v web.Validation
	v.Text("note", body.Note, maxNote, false)
	if err := v.Err(); err != nil {
		return err
	}
	rel, err := a.publish(c.UserContext(), ev, strings.TrimSpace(body.Note), web.Organizer(c))
	if errors.Is(err, store.ErrDeferred) {
		return web.Problem(http.StatusServiceUnavailable, "publish_deferred",
			"the release was recorded but could not be confirmed; check the releases in a moment before publishing again")
	}
	if err != nil {
		return err
	}
	d, err := a.drafts.latest(c.UserContext(), ev.ID)
	if err != nil {
		return err
	}
	c.Location("/admin/events/" + ev.ID + "/agenda/releases/" + strconv.Itoa(rel.Version))
	return c.Status(http.StatusCreated).JSON(fiber.Map{
		"version": rel.Version, "previous": rel.Previous, "note": rel.Note,
		"published_at": rel.PublishedAt, "published_by": rel.PublishedBy,
		"diff": nonNil(rel.Changes), "warnings": nonNil(check(ev, d.Sessions)),
	})
}

// releaseSummary is a changelog entry.
type releaseSummary struct {
	Version     int                    `json:"version"`
	Previous    int                    `json:"previous"`
	Note        string                 `json:"note,omitempty"`
	PublishedAt time.Time              `json:"published_at"`
	PublishedBy string                 `json:"published_by,omitempty"`
	Diff        []events.SessionChange `json:"diff"`
}

func summaries(rels []*events.Release) []releaseSummary {
	out := make([]releaseSummary, 0, len(rels))
	for i := len(rels) - 1; i >= 0; i-- {
		r := rels[i]
		out = append(out, releaseSummary{Version: r.Version, Previous: r.Previous, Note: r.Note,
			PublishedAt: r.PublishedAt, PublishedBy: r.PublishedBy, Diff: nonNil(r.Changes)})
	}
	return out
}

func (a *agenda) handleAdminReleases(c *fiber.Ctx) error {
	ev, err := a.eventByID(c)
	if err != nil {
		return err
	}
	rels, err := a.releases.all(c.UserContext(), ev.ID)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"event_id": ev.ID, "releases": summaries(rels)})
}

func (a *agenda) handleAdminRelease(c *fiber.Ctx) error {
	ev, err := a.eventByID(c)
	if err != nil {
		return err
	}
	rel, err := a.releaseN(c, ev)
	if err != nil {
		return err
	}
	return c.JSON(rel)
}

// releaseN is the release numbered in the path.
func (a *agenda) releaseN(c *fiber.Ctx, ev *events.Event) (*events.Release, error) {
	n, err := strconv.Atoi(c.Params("n"))
	if err != nil || n < 1 {
		return nil, web.NotFound("releases are numbered 1, 2, 3 …")
	}
	head, err := a.releases.published(c.UserContext(), ev.ID)
	if err != nil {
		return nil, err
	}
	if n > head {
		return nil, web.NotFound("the agenda of " + ev.Title + " has no release " + strconv.Itoa(n))
	}
	rel, err := a.releases.version(c.UserContext(), ev.ID, n)
	if errors.Is(err, store.ErrNotFound) {
		return nil, web.NotFound("the agenda of " + ev.Title + " has no release " + strconv.Itoa(n))
	}
	return rel, err
}

// latestPublic is the newest release of the event at :slug, for anyone.
func (a *agenda) latestPublic(c *fiber.Ctx) (*events.Event, *events.Release, error) {
	ev, err := a.eventBySlug(c)
	if err != nil {
		return nil, nil, err
	}
	rel, err := a.releases.latest(c.UserContext(), ev.ID, false)
	if errors.Is(err, store.ErrNotFound) {
		return ev, nil, web.Problem(http.StatusNotFound, "no_release", "the agenda of "+ev.Title+" has not been published yet")
	}
	if err != nil {
		return nil, nil, err
	}
	// The event may have been renamed or moved to another zone since the
	// release: the latest agenda shows the event as it is now.
	p := public(rel)
	p.Slug, p.Title, p.Timezone = ev.Slug, ev.Title, ev.Timezone
	return ev, p, nil
}

func (a *agenda) handleLatest(c *fiber.Ctx) error {
	ev, rel, err := a.latestPublic(c)
	if err != nil {
		return err
	}
	if publicCache(c, ev, rel) {
		return c.SendStatus(fiber.StatusNotModified)
	}
	return c.JSON(rel)
}

func (a *agenda) handleRelease(c *fiber.Ctx) error {
	ev, err := a.eventBySlug(c)
	if err != nil {
		return err
	}
	rel, err := a.releaseN(c, ev)
	if err != nil {
		return err
	}
	// A release never changes.
	c.Set(fiber.HeaderCacheControl, "public, max-age=86400, immutable")
	return c.JSON(public(rel))
}

func (a *agenda) handleChanges(c *fiber.Ctx) error {
	ev, err := a.eventBySlug(c)
	if err != nil {
		return err
	}
	rels, err := a.releases.all(c.UserContext(), ev.ID)
	if err != nil {
		return err
	}
	for i, r := range rels {
		rels[i] = public(r)
	}
	c.Set(fiber.HeaderCacheControl, "public, max-age=60")
	return c.JSON(fiber.Map{"event_id": ev.ID, "slug": ev.Slug, "releases": summaries(rels)})
}

// publicCache lets browsers and calendar apps keep the latest release for
// a minute and revalidate it by version; it reports whether the client's
// copy is current (answer 304).
func publicCache(c *fiber.Ctx, ev *events.Event, rel *events.Release) bool {
	c.Set(fiber.HeaderCacheControl, "public, max-age=60")
	c.Set(fiber.HeaderETag, etag(ev, rel))
	return c.Get(fiber.HeaderIfNoneMatch) == etag(ev, rel)
}

// etag names what a public view shows: the release, and the version of the
// event whose title and zone it shows.
func etag(ev *events.Event, rel *events.Release) string {
	return `"` + rel.EventID + "-" + strconv.Itoa(rel.Version) + "-" + strconv.FormatInt(ev.Version, 10) + `"`
}
