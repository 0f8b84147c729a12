package notification

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// announcementsCollection holds organisers' announcements: one document
// each, inserted when accepted (the insert is the claim of its id) and
// marked once every email of it is queued. Announcements are few, so the
// collection stays small enough to look up and update.
const announcementsCollection = "announcements"

// Audiences an announcement can go to: every confirmed participant, or
// those of one mode (events.ModeInPerson, events.ModeOnline).
const audienceAll = "all"

// announcement is an organiser's message to the participants of an event.
type announcement struct {
	ID       string `bson:"_id"`
	EventID  string `bson:"event_id"`
	Subject  string `bson:"subject"`
	Body     string `bson:"body"`
	Audience string `bson:"audience"`
	// Recipients are the registrations it goes to, fixed when it was
	// accepted: a repeat or a resumption sends to no one new.
	Recipients []string   `bson:"recipients"`
	Count      int        `bson:"count"`
	Organizer  string     `bson:"organizer,omitempty"`
	CreatedAt  time.Time  `bson:"created_at"`
	QueuedAt   *time.Time `bson:"queued_at,omitempty"` // nil until every email is claimed and queued
}

// includes reports whether the announcement's audience takes p.
func includes(audience string, p participant) bool {
	return p.Status == events.StatusConfirmed && (audience == audienceAll || p.Mode == audience)
}

// announcer sends announcements: one email per recipient, claimed by the
// key announcement:<id>:<registration>, so that a repeat or a resumption
// sends nothing twice.
type announcer struct {
	coll  *mongo.Collection
	n     *notifier
	unsub *unsubscribes
	links *unsubscribeLinks
	log   *slog.Logger
}

func newAnnouncer(db *mongo.Database, n *notifier, unsub *unsubscribes, links *unsubscribeLinks, log *slog.Logger) *announcer {
	return &announcer{coll: db.Collection(announcementsCollection), n: n, unsub: unsub, links: links, log: log}
}

func (a *announcer) ensureIndexes(ctx context.Context) error {
	return store.EnsureIndexes(ctx, a.coll.Database(),
		store.Index{Collection: announcementsCollection, Keys: bson.D{{Key: "event_id", Value: 1}}})
}

// create stores ann. If an announcement with its id is stored already (the
// same request again), it returns that one and false.
func (a *announcer) create(ctx context.Context, ann announcement) (announcement, bool, error) {
	_, err := a.coll.InsertOne(ctx, ann)
	if err = store.Translate(err); err == nil {
		return ann, true, nil
	} else if !errors.Is(err, store.ErrDuplicate) {
		return ann, false, fmt.Errorf("announcement[%s]: %w", ann.ID, err)
	}
	var stored announcement
	if err := store.Translate(a.coll.FindOne(ctx, bson.D{{Key: "_id", Value: ann.ID}}).Decode(&stored)); err != nil {
		return ann, false, fmt.Errorf("announcement[%s]: %w", ann.ID, err)
	}
	return stored, false, nil
}

// announceChunk is how many announcement emails are rendered, claimed and
// queued at once: one InsertMany and one atomic batch each.
const announceChunk = 500

// send queues the announcement's emails: one per recipient who is still a
// confirmed participant of its audience and has not unsubscribed, in their
// language, with a one-click way out of further announcements (RFC 8058).
// Once all are queued the announcement is marked so; until then it can be
// sent again, and the claims keep anyone from getting it twice.
func (a *announcer) send(ctx context.Context, ann announcement) error {
	ev, err := a.n.eventOf(ctx, ann.EventID)
	if err != nil {
		return fmt.Errorf("announcement[%s]: %w", ann.ID, err)
	}
	people, err := a.n.people.current(ctx, ann.EventID)
	if err != nil {
		return err
	}
	byID := make(map[string]participant, len(people))
	for _, p := range people {
		byID[p.RegistrationID] = p
	}
	unsubscribed, err := a.unsub.of(ctx, ann.EventID)
	if err != nil {
		return err
	}
	now, trace := time.Now().UTC(), events.TraceFrom(ctx)
	batch := make([]emailRecord, 0, announceChunk)
	flush := func() error {
		for i, err := range a.n.queue(ctx, batch) {
			if err != nil {
				return fmt.Errorf("announcement[%s]: queue %s: %w", ann.ID, batch[i].ID, err)
			}
		}
		batch = make([]emailRecord, 0, announceChunk)
		return nil
	}
	for _, regID := range ann.Recipients {
		p, ok := byID[regID]
		addr := strings.TrimSpace(p.Email)
		if !ok || !includes(ann.Audience, p) || unsubscribed[addressKey(addr)] {
			continue // cancelled, erased or unsubscribed since
		}
		if _, err := mail.ParseAddress(addr); err != nil || strings.ContainsAny(addr, "\r\n") {
			continue
		}
		unsubscribe := a.links.url(regID)
		r, err := a.n.tmpl.render(announcementLetter(ann, ev, p, unsubscribe))
		if err != nil {
			return fmt.Errorf("announcement[%s]: render for registration[%s]: %w", ann.ID, regID, err)
		}
		batch = append(batch, emailRecord{
			ID: jobID("announcement:" + ann.ID + ":" + regID), EventID: ann.EventID, RegistrationID: regID,
			Kind: kindAnnouncement, To: addr, ToName: r.toName, Subject: r.subject, Text: r.text, HTML: r.html,
			Attachments: r.attachments, Headers: unsubscribeHeaders(unsubscribe), CreatedAt: now, TraceParent: trace,
		})
		if len(batch) == announceChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	_, err = a.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: ann.ID}}, bson.D{{Key: "$set", Value: bson.D{{Key: "queued_at", Value: now}}}})
	if err != nil {
		return fmt.Errorf("announcement[%s]: mark queued: %w", ann.ID, err)
	}
	return nil
}

// announcementLetter is the letter of ann to p.
func announcementLetter(ann announcement, ev events.Event, p participant, unsubscribeURL string) letter {
	locale := p.Locale
	if locale == "" && len(ev.Locales) > 0 {
		locale = ev.Locales[0]
	}
	return letter{
		Kind: kindAnnouncement, Locale: locale, To: strings.TrimSpace(p.Email), Name: p.Name,
		Title: ev.Title, EventStart: ev.StartsAt, EventEnd: ev.EndsAt, EventZone: ev.Timezone,
		VenueName: ev.Venue.Name, VenueAddress: ev.Venue.Address, EventURL: ev.PublicURL,
		Mode: p.Mode, LocalZone: p.Timezone, Status: p.Status, ManageURL: p.ManageURL,
		Subject: ann.Subject, Body: ann.Body, UnsubscribeURL: unsubscribeURL,
	}
}

// unsubscribeHeaders are RFC 8058's one-click unsubscribe header fields.
// Only announcements carry them: transactional emails are never suppressed.
func unsubscribeHeaders(url string) map[string]string {
	return map[string]string{
		"List-Unsubscribe":      "<" + url + ">",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
	}
}

// resumeAfter is how old an announcement not yet queued must be before a
// sweep finishes it: older than any request still sending it.
const resumeAfter = time.Minute

// resume finishes, at start and then every interval, the announcements
// whose sending stopped half way (a crash, an outage): the claims make the
// emails sent already not go again.
func (a *announcer) resume(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := a.resumeOnce(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("resuming announcements", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *announcer) resumeOnce(ctx context.Context) error {
	filter := bson.D{
		{Key: "queued_at", Value: bson.D{{Key: "$exists", Value: false}}},
		{Key: "created_at", Value: bson.D{{Key: "$lt", Value: time.Now().Add(-resumeAfter)}}},
	}
	cur, err := a.coll.Find(ctx, filter)
	if err != nil {
		return err
	}
	var pending []announcement
	if err := cur.All(ctx, &pending); err != nil {
		return err
	}
	var errs []error
	for _, ann := range pending {
		if err := a.send(ctx, ann); err != nil {
			errs = append(errs, err) // the others may still go out
			continue
		}
		a.log.Info("announcement resumed and queued", "announcement_id", ann.ID, "event_id", ann.EventID)
	}
	return errors.Join(errs...)
}

// announcementRequest is the body of POST /admin/events/{id}/announcements.
type announcementRequest struct {
	Subject  string `json:"subject"`
	Body     string `json:"body"`
	Audience string `json:"audience"`
}

func (r announcementRequest) validate() error {
	var v web.Validation
	v.Text("subject", r.Subject, 200, true)
	v.Text("body", r.Body, 10_000, true)
	switch r.Audience {
	case audienceAll, events.ModeInPerson, events.ModeOnline:
	default:
		v.Add("audience", "must be one of all, in_person, online")
	}
	return v.Err()
}

// announce accepts an announcement and queues its emails: 202 {id,
// recipients, queued}. The announcement is stored before any email goes
// out, so once it is accepted it is sent even if queuing stops half way
// (queued false: the sweep finishes it). With an Idempotency-Key its id
// derives from the key, the path and the body, and a repeat answers the
// same without sending anything twice.
func (a *api) announce(c *fiber.Ctx) error {
	ctx, eventID := c.UserContext(), c.Params("id")
	var req announcementRequest
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return web.BadRequest("the body must be a JSON object {subject, body, audience}")
	}
	if err := req.validate(); err != nil {
		return err
	}
	key, err := web.IdempotencyKey(c)
	if err != nil {
		return err
	}
	id := events.NewID()
	if key != "" {
		id = key[:32]
	}

	people, err := a.n.people.current(ctx, eventID)
	if err != nil {
		return err
	}
	if len(people) == 0 {
		known, err := a.eventOK(ctx, eventID)
		if err != nil {
			return err
		}
		if !known {
			return web.NotFound("no event with id " + eventID)
		}
	}
	unsubscribed, err := a.unsub.of(ctx, eventID)
	if err != nil {
		return err
	}
	var recipients []string
	for _, p := range people {
		if includes(req.Audience, p) && !unsubscribed[addressKey(p.Email)] {
			recipients = append(recipients, p.RegistrationID)
		}
	}
	slices.Sort(recipients)
	ann, created, err := a.ann.create(ctx, announcement{
		ID: id, EventID: eventID, Subject: req.Subject, Body: req.Body, Audience: req.Audience,
		Recipients: recipients, Count: len(recipients), Organizer: web.Organizer(c), CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	log := a.log.With("announcement_id", ann.ID, "event_id", eventID, "organizer", web.Organizer(c))
	queued := ann.QueuedAt != nil
	if !queued {
		if err := a.ann.send(ctx, ann); err != nil {
			log.Error("announcement accepted but not all queued; the sweep finishes it", "err", err)
		} else {
			queued = true
			log.Info("announcement queued", "recipients", ann.Count, "repeat", !created)
		}
	}
	return c.Status(http.StatusAccepted).JSON(fiber.Map{"id": ann.ID, "recipients": ann.Count, "queued": queued})
}

// announcementInfo is an announcement as organisers list them.
type announcementInfo struct {
	ID         string     `json:"id"`
	Subject    string     `json:"subject"`
	Audience   string     `json:"audience"`
	Recipients int        `json:"recipients"`
	Organizer  string     `json:"organizer,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	QueuedAt   *time.Time `json:"queued_at,omitempty"`
}

// listAnnouncements lists the event's announcements, newest first.
func (a *api) listAnnouncements(c *fiber.Ctx) error {
	opts := options.Find().SetSort(bson.D{{Key: "created_at", Value: -1}}).
		SetProjection(bson.D{{Key: "recipients", Value: 0}, {Key: "body", Value: 0}})
	cur, err := a.ann.coll.Find(c.UserContext(), bson.D{{Key: "event_id", Value: c.Params("id")}}, opts)
	if err != nil {
		return err
	}
	var anns []announcement
	if err := cur.All(c.UserContext(), &anns); err != nil {
		return err
	}
	items := make([]announcementInfo, 0, len(anns))
	for _, x := range anns {
		items = append(items, announcementInfo{
			ID: x.ID, Subject: x.Subject, Audience: x.Audience, Recipients: x.Count,
			Organizer: x.Organizer, CreatedAt: x.CreatedAt, QueuedAt: x.QueuedAt,
		})
	}
	return c.JSON(fiber.Map{"items": items})
}
