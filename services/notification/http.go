package notification

import (
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// routes lists every route the service adds to the app (which already serves
// /healthz, /readyz and /metrics). Admin routes need an organizer token.
func routes(app *fiber.App, tokens []string, a *api) {
	admin := web.Bearer(tokens)
	app.Get("/admin/events/:id/emails", admin, a.listEmails) // ?status=queued|sent|deferred|failed&to=address
	app.Get("/admin/emails/:id", admin, a.getEmail)          // rendered text and HTML, delivery attempts
}

// api serves the email log to organizers.
type api struct {
	emails *emailStore
}

// emailSummary is one row of an event's email log.
type emailSummary struct {
	ID             string    `json:"id"`
	Kind           string    `json:"kind"`
	RegistrationID string    `json:"registration_id"`
	To             string    `json:"to"`
	Subject        string    `json:"subject"`
	Status         string    `json:"status"`
	Attempts       int       `json:"attempts"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// emailDetail is one email as rendered, with its delivery history.
type emailDetail struct {
	ID             string           `json:"id"`
	EventID        string           `json:"event_id"`
	RegistrationID string           `json:"registration_id"`
	Kind           string           `json:"kind"`
	To             string           `json:"to"`
	ToName         string           `json:"to_name,omitempty"`
	Subject        string           `json:"subject"`
	Text           string           `json:"text"`
	HTML           string           `json:"html"`
	Attachments    []attachmentInfo `json:"attachments"`
	Status         string           `json:"status"`
	CreatedAt      time.Time        `json:"created_at"`
	UpdatedAt      time.Time        `json:"updated_at"`
	Attempts       []attemptInfo    `json:"attempts"`
}

type attachmentInfo struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int    `json:"size"`
}

type attemptInfo struct {
	Status  string    `json:"status"`
	Attempt int       `json:"attempt"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

func (a *api) listEmails(c *fiber.Ctx) error {
	eventID, to := c.Params("id"), strings.TrimSpace(c.Query("to"))
	status := strings.ToLower(strings.TrimSpace(c.Query("status")))
	switch status {
	case "", events.MailQueued, events.MailSent, events.MailDeferred, events.MailFailed:
	default:
		var v web.Validation
		v.Add("status", "must be one of queued, sent, deferred, failed")
		return v.Err()
	}
	recs, err := a.emails.list(c.UserContext(), eventID)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(recs))
	kept := recs[:0]
	for _, r := range recs {
		if to == "" || strings.EqualFold(r.To, to) {
			kept = append(kept, r)
			ids = append(ids, r.ID)
		}
	}
	statuses, err := a.emails.statusesOf(c.UserContext(), ids...)
	if err != nil {
		return err
	}
	items := make([]emailSummary, 0, len(kept))
	for _, r := range kept {
		st, at, attempts := latest(statuses[r.ID], r.CreatedAt)
		if status != "" && st != status {
			continue
		}
		items = append(items, emailSummary{
			ID: r.ID, Kind: r.Kind, RegistrationID: r.RegistrationID, To: r.To, Subject: r.Subject,
			Status: st, Attempts: attempts, CreatedAt: r.CreatedAt, UpdatedAt: at,
		})
	}
	return c.JSON(fiber.Map{"items": items})
}

func (a *api) getEmail(c *fiber.Ctx) error {
	id := c.Params("id")
	r, err := a.emails.get(c.UserContext(), id)
	if errors.Is(err, store.ErrNotFound) {
		return web.NotFound("no email with id " + id)
	}
	if err != nil {
		return err
	}
	statuses, err := a.emails.statusesOf(c.UserContext(), id)
	if err != nil {
		return err
	}
	recs := statuses[id]
	st, at, _ := latest(recs, r.CreatedAt)
	out := emailDetail{
		ID: r.ID, EventID: r.EventID, RegistrationID: r.RegistrationID, Kind: r.Kind,
		To: r.To, ToName: r.ToName, Subject: r.Subject, Text: r.Text, HTML: r.HTML,
		Attachments: make([]attachmentInfo, 0, len(r.Attachments)),
		Status:      st, CreatedAt: r.CreatedAt, UpdatedAt: at,
		Attempts: make([]attemptInfo, 0, len(recs)),
	}
	for _, att := range r.Attachments {
		out.Attachments = append(out.Attachments, attachmentInfo{Name: att.Name, ContentType: att.ContentType, Size: len(att.Data)})
	}
	for _, s := range recs {
		out.Attempts = append(out.Attempts, attemptInfo{Status: s.Status, Attempt: s.Attempt, Detail: s.Detail, At: s.At})
	}
	return c.JSON(out)
}
