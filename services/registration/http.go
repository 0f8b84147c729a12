package registration

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/limiter"

	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// routes lists the whole HTTP surface of the service.
func (r *registrar) routes(app *fiber.App) {
	admin := app.Group("/admin", web.Bearer(r.cfg.AdminTokens))
	admin.Post("/events", r.handleCreateEvent)
	admin.Get("/events", r.handleListEvents)
	admin.Get("/events/:id", r.handleGetEvent)
	admin.Patch("/events/:id", r.handleUpdateEvent)
	admin.Get("/events/:id/stats", r.handleEventStats)
	admin.Get("/events/:id/registrations", r.handleListRegistrations)
	admin.Get("/events/:id/registrations.csv", r.handleRegistrationsCSV)
	admin.Post("/registrations/:id/:action", r.handleOrganizerAction)

	api := app.Group("/api")
	api.Get("/events/:slug", r.handlePublicEvent)
	guards := r.registrationGuards() // shared: one budget per IP and address
	api.Post("/events/:slug/registrations", slices.Concat(guards, []fiber.Handler{r.handleRegister})...)
	manage := api.Group("/manage/:token", noStore)
	manage.Get("", r.handleManageView)
	manage.Patch("", r.handleManagePatch)
	manage.Delete("", r.handleManageErase)
	manage.Post("/cancel", r.handleManageCancel)
	manage.Post("/resend-link", r.handleManageResend)
	manage.Get("/export", r.handleManageExport)

	app.Get(formRoute, r.pageEvent)
	app.Post(formRoute, slices.Concat(guards, []fiber.Handler{r.pageRegister})...)
	app.Get("/r/:token", noStore, r.pageManage)
	app.Post("/r/:token", noStore, r.pageManageAction)
	app.Get("/j/:token", noStore, r.pageJoin)
}

// registrationGuards are the middleware of the public writes (the API and
// the form): per-IP and per-address rate limits. Idempotency-Key needs no
// middleware: NATS deduplicates the request it names (see submit).
func (r *registrar) registrationGuards() []fiber.Handler {
	tooMany := func(c *fiber.Ctx) error {
		return web.Problem(http.StatusTooManyRequests, "rate_limited", "too many registration attempts; wait a minute and try again")
	}
	return []fiber.Handler{
		limiter.New(limiter.Config{
			Max: r.cfg.RatePerIP, Expiration: time.Minute, LimitReached: tooMany,
			KeyGenerator: func(c *fiber.Ctx) string { return "ip:" + web.ClientIP(c) },
		}),
		// Attempts that failed (ours, while NATS was away, or invalid
		// ones) do not use up a person's budget for the address.
		limiter.New(limiter.Config{
			Max: r.cfg.RatePerEmail, Expiration: time.Minute, LimitReached: tooMany, SkipFailedRequests: true,
			KeyGenerator: func(c *fiber.Ctx) string {
				return "email:" + c.Params("slug") + ":" + strings.ToLower(strings.TrimSpace(emailOf(c)))
			},
		}),
	}
}

// emailOf reads the address a registration is for the way its handler
// will: the form route parses the body as a form whatever it claims to be,
// the API as JSON; the body only, never the query string, so a decoy cannot
// move the attempt into another address's budget.
func emailOf(c *fiber.Ctx) string {
	if c.Route().Path == formRoute {
		form, _ := url.ParseQuery(string(c.Body()))
		return form.Get("email")
	}
	var body struct {
		Email string `json:"email"`
	}
	_ = json.Unmarshal(c.Body(), &body)
	return body.Email
}

// formRoute is the registration form's route.
const formRoute = "/e/:slug"

func noStore(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("Referrer-Policy", "no-referrer")
	return c.Next()
}

func (r *registrar) handleCreateEvent(c *fiber.Ctx) error {
	var ev Event
	if err := decodeJSON(c, &ev); err != nil {
		return err
	}
	if err := validateEvent(&ev); err != nil {
		return err
	}
	if err := r.createEvent(c.UserContext(), &ev); err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(&ev)
}

func (r *registrar) handleListEvents(c *fiber.Ctx) error {
	evs, err := r.store.listEvents(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"items": evs})
}

func (r *registrar) handleGetEvent(c *fiber.Ctx) error {
	ev, err := r.eventByID(c)
	if err != nil {
		return err
	}
	return c.JSON(ev)
}

func (r *registrar) handleEventStats(c *fiber.Ctx) error {
	ev, err := r.eventByID(c)
	if err != nil {
		return err
	}
	st, err := r.store.stats(c.UserContext(), ev)
	if err != nil {
		return err
	}
	return c.JSON(st)
}

// publicEvent is what anyone may see of an event.
type publicEvent struct {
	Slug        string     `json:"slug"`
	Title       string     `json:"title"`
	Description string     `json:"description"`
	Timezone    string     `json:"timezone"`
	StartsAt    time.Time  `json:"starts_at"`
	EndsAt      time.Time  `json:"ends_at"`
	Venue       any        `json:"venue"`
	Questions   []Question `json:"questions"`
	Locales     []string   `json:"locales"`
	Open        bool       `json:"registration_open"`
	// Seats says per mode whether a seat is free now.
	Seats map[string]bool `json:"seats_available"`
	// Waitlist says whether a full mode still takes people on a waiting list.
	Waitlist bool `json:"waitlist"`
}

func (r *registrar) handlePublicEvent(c *fiber.Ctx) error {
	ev, err := r.cachedEvent(c)
	if err != nil {
		return err
	}
	seats, err := r.cache.seats(c.UserContext(), ev)
	if err != nil {
		return err
	}
	return c.JSON(publicEvent{
		Slug: ev.Slug, Title: ev.Title, Description: ev.Description, Timezone: ev.Timezone,
		StartsAt: ev.StartsAt, EndsAt: ev.EndsAt, Venue: ev.Venue, Questions: ev.Questions,
		Locales: ev.Locales, Open: openForRegistration(ev, time.Now()) == nil, Seats: seats,
		Waitlist: ev.Registration.Waitlist,
	})
}

func (r *registrar) handleRegister(c *fiber.Ctx) error {
	ev, err := r.cachedEvent(c)
	if err != nil {
		return err
	}
	var req RegisterRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := openForRegistration(ev, time.Now()); err != nil {
		return err
	}
	n, err := newRegistration(ev, &req)
	if err != nil {
		return err
	}
	key, err := web.IdempotencyKey(c)
	if err != nil {
		return err
	}
	if err := r.register(c.UserContext(), ev, n, key); err != nil {
		return err
	}
	return c.Status(http.StatusAccepted).JSON(fiber.Map{"status": "received"})
}

func (r *registrar) eventByID(c *fiber.Ctx) (*Event, error) {
	ev, err := r.store.eventByID(c.UserContext(), c.Params("id"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, web.NotFound("no event with id " + c.Params("id"))
	}
	return ev, err
}

// cachedEvent is eventBySlug through the short-lived cache, for the public
// hot paths (the registration rush reads the event once a second, not once
// a request).
func (r *registrar) cachedEvent(c *fiber.Ctx) (*Event, error) {
	ev, err := r.cache.bySlug(c.UserContext(), c.Params("slug"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, web.NotFound("no event at this address; check the link you were given")
	}
	return ev, err
}

func (r *registrar) eventBySlug(c *fiber.Ctx) (*Event, error) {
	ev, err := r.store.eventBySlug(c.UserContext(), c.Params("slug"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, web.NotFound("no event at this address; check the link you were given")
	}
	return ev, err
}

// decodeJSON parses a JSON body strictly enough to catch typos in field
// types, and answers a clear 400 otherwise.
func decodeJSON(c *fiber.Ctx, v any) error {
	if ct := c.Get(fiber.HeaderContentType); !strings.HasPrefix(ct, fiber.MIMEApplicationJSON) &&
		!strings.HasPrefix(ct, "application/merge-patch+json") {
		return web.Problem(http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as application/json")
	}
	if err := json.Unmarshal(c.Body(), v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			p := web.Problem(http.StatusUnprocessableEntity, "validation", "invalid fields: "+te.Field)
			p.Errors = []web.FieldError{{Field: te.Field, Message: "must be a " + te.Type.String()}}
			return p
		}
		var perr *time.ParseError
		if errors.As(err, &perr) {
			return web.BadRequest("times must be RFC 3339 with an offset, e.g. 2020-11-09T09:00:00+01:00")
		}
		return web.BadRequest("the body is not valid JSON: " + err.Error())
	}
	return nil
}
