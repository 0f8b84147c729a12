package agenda

import (
	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/calendar"
)

// handleICS serves the latest release as a calendar feed that calendar apps
// subscribe to: every session, cancelled ones marked so, with a UID that
// stays the same from release to release.
func (a *agenda) handleICS(c *fiber.Ctx) error {
	ev, rel, err := a.latestPublic(c)
	if err != nil {
		return err
	}
	if publicCache(c, ev, rel) {
		return c.SendStatus(fiber.StatusNotModified)
	}
	body, err := calendar.Feed(rel, calendar.Options{
		Domain:  a.public.Hostname(),
		PageURL: a.public.String() + "/e/" + ev.Slug + "/agenda",
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, calendar.ContentType)
	c.Set(fiber.HeaderContentDisposition, `inline; filename="`+ev.Slug+`.ics"`)
	return c.Send(body)
}
