package registration

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// manageView is what a participant sees of their own registration.
type manageView struct {
	ID          string         `json:"id"`
	Status      string         `json:"status"`
	Mode        string         `json:"mode"`
	WantsMode   string         `json:"wants_mode,omitempty"`
	Position    int            `json:"waitlist_position,omitempty"`
	Name        string         `json:"name"`
	Email       string         `json:"email"`
	Locale      string         `json:"locale"`
	Timezone    string         `json:"timezone,omitempty"`
	Answers     map[string]any `json:"answers,omitempty"`
	JoinURL     string         `json:"join_url,omitempty"`
	CheckedInAt *time.Time     `json:"checked_in_at,omitempty"`
	Erased      bool           `json:"erased,omitempty"`
	Version     int64          `json:"version"`
	Event       struct {
		Slug     string    `json:"slug"`
		Title    string    `json:"title"`
		Timezone string    `json:"timezone"`
		StartsAt time.Time `json:"starts_at"`
		EndsAt   time.Time `json:"ends_at"`
	} `json:"event"`
}

func (r *registrar) view(ctx context.Context, reg *Registration, ev *Event) (*manageView, error) {
	v := &manageView{ID: reg.ID, Status: reg.Status, Mode: reg.Mode, WantsMode: reg.WantsMode, Name: reg.Name,
		Email: reg.Email, Locale: reg.Locale, Timezone: reg.Timezone, Answers: reg.Answers,
		CheckedInAt: reg.CheckedInAt, Erased: reg.ErasedAt != nil, Version: reg.Version}
	v.Event.Slug, v.Event.Title, v.Event.Timezone = ev.Slug, ev.Title, ev.Timezone
	v.Event.StartsAt, v.Event.EndsAt = ev.StartsAt, ev.EndsAt
	if reg.Status == events.StatusConfirmed && reg.Mode == events.ModeOnline {
		v.JoinURL = r.public + "/j/" + r.links.Token(links.Join, reg.ID, reg.LinkVersion)
	}
	if reg.waitsFor() != "" {
		n, err := r.store.waitingAhead(ctx, reg)
		if err != nil {
			return nil, err
		}
		v.Position = n + 1
	}
	return v, nil
}

// waitingAhead counts the registrations before reg on its waiting list.
func (s *regStore) waitingAhead(ctx context.Context, reg *Registration) (int, error) {
	w := reg.waitsFor()
	n, err := s.registrations.CountDocuments(ctx, bson.D{
		{Key: "event_id", Value: reg.EventID},
		{Key: "queue", Value: bson.D{{Key: "$gt", Value: 0}, {Key: "$lt", Value: reg.Queue}}},
		{Key: "$or", Value: bson.A{
			bson.D{{Key: "status", Value: events.StatusWaitlisted}, {Key: "mode", Value: w}},
			bson.D{{Key: "status", Value: events.StatusConfirmed}, {Key: "wants_mode", Value: w}},
		}},
	})
	return int(n), err
}

func (r *registrar) handleManageView(c *fiber.Ctx) error {
	reg, ev, err := r.byManageToken(c.UserContext(), c.Params("token"))
	if err != nil {
		return err
	}
	return r.writeView(c, reg, ev)
}

// managePatch is a participant's change: details and, or, the mode.
type managePatch struct {
	Name     *string        `json:"name"`
	Answers  map[string]any `json:"answers"`
	Locale   *string        `json:"locale"`
	Timezone *string        `json:"timezone"`
	Mode     *string        `json:"mode"`
}

// validate checks a change against the event, as a registration is.
func (p *managePatch) validate(ev *Event) (*editData, error) {
	var v web.Validation
	e := &editData{}
	changed := false
	if p.Name != nil {
		name := strings.TrimSpace(*p.Name)
		v.Text("name", name, maxName, true)
		e.Name, changed = &name, true
	}
	if p.Answers != nil {
		e.Answers, changed = validateAnswers(&v, ev.Questions, p.Answers), true
	}
	if p.Locale != nil {
		checkLocale(&v, *p.Locale)
		e.Locale, changed = p.Locale, true
	}
	if p.Timezone != nil {
		tz := strings.TrimSpace(*p.Timezone)
		checkTimezone(&v, tz)
		e.Timezone, changed = &tz, true
	}
	if p.Mode != nil && *p.Mode != events.ModeInPerson && *p.Mode != events.ModeOnline {
		v.Add("mode", "must be in_person or online")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if !changed {
		return nil, nil
	}
	return e, nil
}

func (r *registrar) handleManagePatch(c *fiber.Ctx) error {
	reg, ev, err := r.byManageToken(c.UserContext(), c.Params("token"))
	if err != nil {
		return err
	}
	var p managePatch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	edit, err := p.validate(ev)
	if err != nil {
		return err
	}
	// One request, decided whole: a switch refused as full changes no
	// detail either.
	req := &request{Kind: kindEdit, Edit: edit}
	if p.Mode != nil {
		req.Mode = *p.Mode
	}
	if edit != nil || p.Mode != nil {
		if err := r.participantAsk(c, reg, req); err != nil {
			return accepted(c, err)
		}
	}
	return r.respondView(c, reg.ID, ev)
}

func (r *registrar) handleManageCancel(c *fiber.Ctx) error {
	return r.manageAction(c, kindCancel)
}

func (r *registrar) handleManageResend(c *fiber.Ctx) error {
	return r.manageAction(c, kindResend)
}

func (r *registrar) handleManageErase(c *fiber.Ctx) error {
	reg, _, err := r.byManageToken(c.UserContext(), c.Params("token"))
	if err != nil {
		return err
	}
	if err := r.participantAsk(c, reg, &request{Kind: kindErase}); err != nil {
		return accepted(c, err)
	}
	return c.JSON(fiber.Map{"status": "erased"})
}

func (r *registrar) manageAction(c *fiber.Ctx, kind string) error {
	reg, ev, err := r.byManageToken(c.UserContext(), c.Params("token"))
	if err != nil {
		return err
	}
	if kind == kindResend && !r.resends.allow(reg.ID) {
		return web.Problem(http.StatusTooManyRequests, "rate_limited", "we sent your links a moment ago; please check your inbox (and spam folder) before asking again")
	}
	if err := r.participantAsk(c, reg, &request{Kind: kind}); err != nil {
		return accepted(c, err)
	}
	return r.respondView(c, reg.ID, ev)
}

// accepted answers 202 when the decider has not answered in time (the
// request is stored and will be decided), and err otherwise.
func accepted(c *fiber.Ctx, err error) error {
	if errors.Is(err, errNoAnswer) {
		return c.Status(http.StatusAccepted).JSON(fiber.Map{"status": "received"})
	}
	return err
}

// resendLimiter bounds "email me my links again" per registration and hour,
// in this replica's memory (a few extra with several replicas is harmless;
// notification limits emails per address too).
type resendLimiter struct {
	mu    sync.Mutex
	limit int
	sent  map[string][]time.Time
}

func newResendLimiter(perHour int) *resendLimiter {
	return &resendLimiter{limit: perHour, sent: map[string][]time.Time{}}
}

func (l *resendLimiter) allow(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	recent := slices.DeleteFunc(l.sent[id], func(t time.Time) bool { return now.Sub(t) > time.Hour })
	if len(recent) >= l.limit {
		l.sent[id] = recent
		return false
	}
	l.sent[id] = append(recent, now)
	if len(l.sent) > 100_000 { // bound the memory a flood could take
		clear(l.sent)
	}
	return true
}

// participantAsk asks the decider for a change made with reg's manage link.
// No answer in time is a 202 (errNoAnswer); a refusal its problem.
func (r *registrar) participantAsk(c *fiber.Ctx, reg *Registration, req *request) error {
	req.EventID, req.RegID, req.LinkVersion = reg.EventID, reg.ID, reg.LinkVersion
	key, err := web.IdempotencyKey(c)
	if err != nil {
		return err
	}
	rep, err := r.ask(c.UserContext(), req, key)
	if err != nil {
		return err
	}
	return replyProblem(rep)
}

func (r *registrar) respondView(c *fiber.Ctx, id string, ev *Event) error {
	reg, err := r.store.registrationByID(c.UserContext(), id)
	if err != nil {
		return err
	}
	return r.writeView(c, reg, ev)
}

func (r *registrar) writeView(c *fiber.Ctx, reg *Registration, ev *Event) error {
	v, err := r.view(c.UserContext(), reg, ev)
	if err != nil {
		return err
	}
	return c.JSON(v)
}

// personalData is everything Plenary keeps about one participant.
type personalData struct {
	Registration *Registration `json:"registration"`
	Email        string        `json:"email"`
	Event        struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"event"`
	Joins      []attendance `json:"joins"`
	ExportedAt time.Time    `json:"exported_at"`
}

func (r *registrar) handleManageExport(c *fiber.Ctx) error {
	reg, ev, err := r.byManageToken(c.UserContext(), c.Params("token"))
	if err != nil {
		return err
	}
	joins, err := r.store.joins(c.UserContext(), ev.ID)
	if err != nil {
		return err
	}
	out := personalData{Registration: reg, Email: reg.Email, Joins: []attendance{}, ExportedAt: time.Now().UTC()}
	out.Event.ID, out.Event.Title = ev.ID, ev.Title
	for _, j := range joins {
		if j.RegistrationID == reg.ID {
			out.Joins = append(out.Joins, j)
		}
	}
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="my-registration.json"`)
	return c.JSON(out)
}

// handleOrganizerAction is POST /admin/registrations/{id}/{action}: it
// answers with the registration as the decider left it, or 202 when the
// decider has not answered within ActionWait.
func (r *registrar) handleOrganizerAction(c *fiber.Ctx) error {
	kinds := map[string]string{"approve": kindApprove, "reject": kindReject, "cancel": kindOrgCancel,
		"check-in": kindCheckIn, "rotate-links": kindRotate}
	kind, ok := kinds[c.Params("action")]
	if !ok {
		return web.NotFound("no such action; use approve, reject, cancel, check-in or rotate-links")
	}
	reg, err := r.store.registrationByID(c.UserContext(), c.Params("id"))
	if errors.Is(err, store.ErrNotFound) {
		return web.NotFound("no registration with this id")
	}
	if err != nil {
		return err
	}
	key, err := web.IdempotencyKey(c)
	if err != nil {
		return err
	}
	rep, err := r.ask(c.UserContext(), &request{Kind: kind, EventID: reg.EventID, RegID: reg.ID}, key)
	if errors.Is(err, errNoAnswer) {
		return c.Status(http.StatusAccepted).JSON(fiber.Map{"status": "received"})
	}
	if err != nil {
		return err
	}
	if err := replyProblem(rep); err != nil {
		return err
	}
	return c.JSON(rep.Registration)
}
