package agenda

import (
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// routes lists the whole HTTP surface of the service. Sessions, releases
// and the public agenda come with the agenda issue; today the service shows
// the event it has replicated.
func (a *agenda) routes(app *fiber.App) {
	admin := app.Group("/admin", web.Bearer(a.cfg.AdminTokens))
	admin.Get("/events/:id/agenda/draft", a.handleDraft)

	app.Get("/api/events/:slug/agenda", a.handlePublicAgenda)
}

func (a *agenda) handleDraft(c *fiber.Ctx) error {
	ev, err := a.events.byID(c.UserContext(), c.Params("id"))
	if errors.Is(err, store.ErrNotFound) {
		return web.NotFound("the agenda service does not know event " + c.Params("id") + " (yet); if it was just created, try again in a moment")
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"event": ev, "sessions": []any{}})
}

func (a *agenda) handlePublicAgenda(c *fiber.Ctx) error {
	ev, err := a.events.bySlug(c.UserContext(), c.Params("slug"))
	if errors.Is(err, store.ErrNotFound) {
		return web.NotFound("no event at this address; check the link you were given")
	}
	if err != nil {
		return err
	}
	return web.Problem(http.StatusNotFound, "no_release", "the agenda of "+ev.Title+" has not been published yet")
}
