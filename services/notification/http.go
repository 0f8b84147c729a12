package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// routes lists every route the service adds to the app (which already serves
// /healthz, /readyz and /metrics). Admin routes need an organizer token.
func routes(app *fiber.App, tokens []string, a *api) {
	admin := web.Bearer(tokens)
	app.Get("/admin/events/:id/emails", admin, a.listEmails)                      // ?status=&to=&kind=&cursor=&limit=
	app.Get("/admin/emails/:id", admin, a.getEmail)                               // rendered text and HTML, every attempt
	app.Post("/admin/emails/:id/resend", admin, a.resend)                         // the same content as a new job
	app.Get("/admin/events/:id/dead-letters", admin, a.listDeadLetters)           // failed, not sent again since
	app.Post("/admin/events/:id/dead-letters/replay", admin, a.replayDeadLetters) // every dead letter again
	app.Post("/admin/events/:id/announcements", admin, a.announce)                // {subject, body, audience}
	app.Get("/admin/events/:id/announcements", admin, a.listAnnouncements)
	app.Get("/u/:token", a.unsubscribePage) // a page with a button: a GET never unsubscribes
	app.Post("/u/:token", a.unsubscribe)    // RFC 8058 one-click, or the page's form
}

// api serves the email log, announcements and unsubscribing.
type api struct {
	emails  *emailStore
	n       *notifier
	ann     *announcer
	unsub   *unsubscribes
	links   *unsubscribeLinks
	eventOK func(ctx context.Context, eventID string) (bool, error)
	log     *slog.Logger
}

// newAPI builds the routes' dependencies that only they use.
func newAPI(ctx context.Context, db *mongo.Database, emails *emailStore, n *notifier, replica *eventReplica, links *unsubscribeLinks, log *slog.Logger) (*api, error) {
	unsub := newUnsubscribes(db, n.people)
	if err := unsub.ensureIndexes(ctx); err != nil {
		return nil, err
	}
	ann := newAnnouncer(db, n, unsub, links, log)
	if err := ann.ensureIndexes(ctx); err != nil {
		return nil, err
	}
	eventOK := func(ctx context.Context, id string) (bool, error) {
		_, err := replica.get(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	return &api{emails: emails, n: n, ann: ann, unsub: unsub, links: links, eventOK: eventOK, log: log}, nil
}

// Pages of the email log: limit emails (default, at most), and at most
// logScanMax emails looked at per request when filtering by status, read
// logChunk at a time.
const (
	logLimitDefault = 50
	logLimitMax     = 500
	logScanMax      = 5000
	logChunk        = 500
)

// emailSummary is one row of an event's email log.
type emailSummary struct {
	ID             string    `json:"id"`
	Kind           string    `json:"kind"`
	RegistrationID string    `json:"registration_id"`
	To             string    `json:"to"`
	Subject        string    `json:"subject"`
	Status         string    `json:"status"`
	Attempts       int       `json:"attempts"`
	ResendOf       string    `json:"resend_of,omitempty"`
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
	Headers        []string         `json:"headers,omitempty"` // the names of the extra header fields
	Status         string           `json:"status"`
	CreatedAt      time.Time        `json:"created_at"`
	UpdatedAt      time.Time        `json:"updated_at"`
	Attempts       []attemptInfo    `json:"attempts"`
	ResendOf       string           `json:"resend_of,omitempty"`
	Resends        []string         `json:"resends"` // ids of the resends of its chain, oldest first
}

type attachmentInfo struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int    `json:"size"`
}

type attemptInfo struct {
	Status  string    `json:"status"`
	Attempt int       `json:"attempt"`
	Detail  string    `json:"detail,omitempty"` // the SMTP reply, addresses redacted
	At      time.Time `json:"at"`
}

// kindName is what an email kind looks like.
var kindName = regexp.MustCompile(`^[a-z_]{1,64}$`)

func (a *api) listEmails(c *fiber.Ctx) error {
	f := logFilter{EventID: c.Params("id"), To: strings.TrimSpace(c.Query("to")), Kind: strings.TrimSpace(c.Query("kind"))}
	status := strings.ToLower(strings.TrimSpace(c.Query("status")))
	var v web.Validation
	switch status {
	case "", events.MailQueued, events.MailSent, events.MailDeferred, events.MailFailed:
	default:
		v.Add("status", "must be one of queued, sent, deferred, failed")
	}
	if len(f.To) > 320 {
		v.Add("to", "at most 320 characters")
	}
	if f.Kind != "" && !kindName.MatchString(f.Kind) {
		v.Add("kind", "must be an email kind such as confirmation or announcement")
	}
	limit := logLimitDefault
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > logLimitMax {
			v.Add("limit", "must be a number from 1 to %d", logLimitMax)
		}
		limit = n
	}
	if s := c.Query("cursor"); s != "" {
		cur, err := parseCursor(s)
		if err != nil {
			v.Add("cursor", "%s", err.Error())
		}
		f.After = &cur
	}
	if err := v.Err(); err != nil {
		return err
	}

	// Unfiltered by status, one more email than the page tells whether there
	// are more. By status, emails are read until the page is full, or
	// logScanMax were looked at: then the page may be short, and its cursor
	// goes on from the last email looked at.
	scanLimit := int64(limit + 1)
	if status != "" {
		scanLimit = logScanMax
	}
	items := make([]emailSummary, 0, min(limit, 64))
	var next string
	var seen int64
	var last emailRecord
	err := a.emails.scan(c.UserContext(), f, scanLimit, logChunk, func(batch []emailRecord) (bool, error) {
		ids := make([]string, len(batch))
		for i, r := range batch {
			ids[i] = r.ID
		}
		statuses, err := a.emails.statusesOf(c.UserContext(), ids...)
		if err != nil {
			return false, err
		}
		for _, r := range batch {
			seen, last = seen+1, r
			st, at, attempts := latest(statuses[r.ID], r.CreatedAt)
			if status != "" && st != status {
				continue
			}
			if len(items) == limit {
				next = cursorOf(emailRecord{ID: items[limit-1].ID, CreatedAt: items[limit-1].CreatedAt}).String()
				return false, nil
			}
			items = append(items, emailSummary{
				ID: r.ID, Kind: r.Kind, RegistrationID: r.RegistrationID, To: r.To, Subject: r.Subject,
				Status: st, Attempts: attempts, ResendOf: r.ResendOf, CreatedAt: r.CreatedAt, UpdatedAt: at,
			})
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if next == "" && status != "" && seen == scanLimit {
		next = cursorOf(last).String()
	}
	out := fiber.Map{"items": items}
	if next != "" {
		out["next_cursor"] = next
	}
	return c.JSON(out)
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
	chains, err := a.emails.chains(c.UserContext(), []string{r.root()})
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
		ResendOf: r.ResendOf, Resends: []string{},
	}
	for _, att := range r.Attachments {
		out.Attachments = append(out.Attachments, attachmentInfo{Name: att.Name, ContentType: att.ContentType, Size: len(att.Data)})
	}
	for name := range r.Headers {
		out.Headers = append(out.Headers, name)
	}
	slices.Sort(out.Headers)
	for _, s := range recs {
		out.Attempts = append(out.Attempts, attemptInfo{Status: s.Status, Attempt: s.Attempt, Detail: redact(s.Detail), At: s.At})
	}
	for _, e := range chains[r.root()] {
		if e.ResendOf != "" {
			out.Resends = append(out.Resends, e.ID)
		}
	}
	return c.JSON(out)
}

// resend sends an email's content again as a new job, the next of its
// resend chain. With an Idempotency-Key, a repeat of the request names the
// resend it made; without one, two requests racing for the same number make
// one resend.
func (a *api) resend(c *fiber.Ctx) error {
	ctx, id := c.UserContext(), c.Params("id")
	key, err := web.IdempotencyKey(c)
	if err != nil {
		return err
	}
	rec, err := a.emails.get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return web.NotFound("no email with id " + id)
	}
	if err != nil {
		return err
	}
	chains, err := a.emails.chains(ctx, []string{rec.root()})
	if err != nil {
		return err
	}
	chain := chains[rec.root()]
	next := 1
	for _, e := range chain {
		next = max(next, e.Resend+1)
		if key != "" && e.IdempotencyKey == key {
			again, err := a.emails.get(ctx, e.ID)
			if err != nil {
				return err
			}
			if err := a.n.queue(ctx, []emailRecord{again})[0]; err != nil {
				return err
			}
			return c.Status(http.StatusAccepted).JSON(fiber.Map{"id": e.ID, "resend_of": e.ResendOf, "status": events.MailQueued})
		}
	}
	if rec.Kind == kindAnnouncement {
		gone, err := a.unsub.has(ctx, rec.EventID, rec.To)
		if err != nil {
			return err
		}
		if gone {
			return web.Conflict("unsubscribed", "the recipient unsubscribed from this event's announcements; it is not sent again")
		}
	}
	out := rec.resent(next, key, time.Now())
	if err := a.n.queue(ctx, []emailRecord{out})[0]; err != nil {
		return err
	}
	a.log.Info("email resent", "job_id", out.ID, "resend_of", out.ResendOf, "event_id", out.EventID, "organizer", web.Organizer(c))
	return c.Status(http.StatusAccepted).JSON(fiber.Map{"id": out.ID, "resend_of": out.ResendOf, "status": events.MailQueued})
}

// deadLetterInfo is a failed email and why it failed.
type deadLetterInfo struct {
	ID             string    `json:"id"`
	Kind           string    `json:"kind"`
	RegistrationID string    `json:"registration_id"`
	To             string    `json:"to"`
	Subject        string    `json:"subject"`
	Attempts       int       `json:"attempts"`
	Reason         string    `json:"reason"` // the last SMTP reply or error, addresses redacted
	FailedAt       time.Time `json:"failed_at"`
	ResendOf       string    `json:"resend_of,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
}

// deadLettersMax bounds the dead letters listed at once; replay takes all.
const deadLettersMax = 1000

func (a *api) listDeadLetters(c *fiber.Ctx) error {
	dls, err := a.emails.deadLetters(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	items := make([]deadLetterInfo, 0, min(len(dls), deadLettersMax))
	for _, d := range dls[:min(len(dls), deadLettersMax)] {
		items = append(items, deadLetterInfo{
			ID: d.rec.ID, Kind: d.rec.Kind, RegistrationID: d.rec.RegistrationID, To: d.rec.To, Subject: d.rec.Subject,
			Attempts: d.attempts, Reason: redact(d.failed.Detail), FailedAt: d.failed.At, ResendOf: d.rec.ResendOf,
			CreatedAt: d.rec.CreatedAt,
		})
	}
	return c.JSON(fiber.Map{"items": items, "total": len(dls)})
}

// replayChunk is how many dead letters are read with their bodies and
// queued at once.
const replayChunk = 200

// replayDeadLetters sends every dead letter of the event again, each as the
// next resend of its chain. A replayed letter is no longer dead, so a
// repeat of the request replays nothing twice; two at once make the same
// resends, and the claims keep one of each.
func (a *api) replayDeadLetters(c *fiber.Ctx) error {
	ctx, eventID := c.UserContext(), c.Params("id")
	dls, err := a.emails.deadLetters(ctx, eventID)
	if err != nil {
		return err
	}
	unsubscribed, err := a.unsub.of(ctx, eventID)
	if err != nil {
		return err
	}
	ids, skipped := []string{}, 0
	now := time.Now()
	for chunk := range slices.Chunk(dls, replayChunk) {
		next := map[string]int{}
		want := make([]string, len(chunk))
		for i, d := range chunk {
			want[i], next[d.rec.ID] = d.rec.ID, d.next
		}
		recs, err := a.emails.find(ctx, want, true)
		if err != nil {
			return err
		}
		var out []emailRecord
		for _, r := range recs {
			if r.Kind == kindAnnouncement && unsubscribed[addressKey(r.To)] {
				skipped++
				continue
			}
			out = append(out, r.resent(next[r.ID], "", now))
		}
		for i, err := range a.n.queue(ctx, out) {
			if err != nil {
				return fmt.Errorf("replay dead letter %s: %w", out[i].ResendOf, err)
			}
			ids = append(ids, out[i].ID)
		}
	}
	a.log.Info("dead letters replayed", "event_id", eventID, "count", len(ids), "skipped_unsubscribed", skipped, "organizer", web.Organizer(c))
	return c.Status(http.StatusAccepted).JSON(fiber.Map{
		"replayed": len(ids), "skipped_unsubscribed": skipped, "ids": ids[:min(len(ids), deadLettersMax)],
	})
}
