package registration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// registrar is the registration service: its handlers and the outbox
// appliers that make its state changes.
type registrar struct {
	cfg    Config
	log    *slog.Logger
	store  *regStore
	outbox *store.Outbox
	links  *links.Signer
	public string
}

const source = "plenary/registration"

// Outbox kinds.
const (
	kindEventCreate           = "event.create"
	kindRegistrationCreate    = "registration.create"
	kindRegistrationDuplicate = "registration.duplicate"
)

func (r *registrar) registerAppliers() {
	r.outbox.Register(kindEventCreate, r.applyEventCreate)
	r.outbox.Register(kindEventUpdate, r.applyEventUpdate)
	r.outbox.Register(kindRegistrationCreate, r.applyRegistrationCreate)
	r.outbox.Register(kindRegistrationDuplicate, r.applyRegistrationDuplicate)
	r.outbox.Register(kindAttendanceJoin, r.applyAttendanceJoin)
}

var errSlugTaken = errors.New("slug taken")

// createEvent stores a new event and announces it.
func (r *registrar) createEvent(ctx context.Context, ev *Event) error {
	now := time.Now().UTC()
	ev.ID = events.NewID()
	ev.Version = 1
	ev.CreatedAt, ev.UpdatedAt = now, now
	env, err := events.New(source, events.EventCreated, ev.ID, ev.payload(r.public))
	if err != nil {
		return err
	}
	env = env.Traced(ctx)
	entry, err := store.NewEntry(kindEventCreate, env, ev)
	if err != nil {
		return err
	}
	if err := r.outbox.Write(ctx, entry); err != nil {
		if errors.Is(err, errSlugTaken) {
			return web.Conflict("slug_taken", fmt.Sprintf("an event with slug %q already exists; choose another slug", ev.Slug))
		}
		return err
	}
	return nil
}

// applyEventCreate inserts the event.
func (r *registrar) applyEventCreate(ctx context.Context, e *store.Entry) error {
	var ev Event
	if err := decodeState(e, &ev); err != nil {
		return store.Discard(err)
	}
	_, err := r.store.events.InsertOne(ctx, &ev)
	if err = store.Translate(err); !errors.Is(err, store.ErrDuplicate) {
		return err
	}
	if existing, ferr := r.store.eventByID(ctx, ev.ID); ferr == nil && existing != nil {
		return nil // replayed
	}
	return store.Discard(errSlugTaken)
}

// reconcileSeats frees the seats and address holds that crashed
// registrations left behind. It first finishes what the outbox holds, then
// leaves alone what belongs to registrations still in it.
func (r *registrar) reconcileSeats(ctx context.Context) error {
	if _, err := r.outbox.Sweep(ctx, 2*r.cfg.OutboxInterval, 10_000); err != nil {
		return err
	}
	inFlight, err := r.registrationsInOutbox(ctx)
	if err != nil {
		return err
	}
	evs, err := r.store.listEvents(ctx)
	if err != nil {
		return err
	}
	for i := range evs {
		if evs[i].Capacity.InPerson == 0 && evs[i].Capacity.Online == 0 {
			continue
		}
		freed, err := r.store.reconcileSeats(ctx, evs[i].ID, seatClaimGrace, inFlight)
		if err != nil {
			return err
		}
		if freed > 0 {
			r.log.Info("freed seats left by crashed registrations", "event_id", evs[i].ID, "count", freed)
		}
	}
	freed, err := r.store.reconcileHolds(ctx, seatClaimGrace, inFlight)
	if freed > 0 {
		r.log.Info("freed addresses held by crashed registrations", "count", freed)
	}
	return err
}

// registrationsInOutbox returns the ids of the registrations whose outbox
// entries are not finished yet.
func (r *registrar) registrationsInOutbox(ctx context.Context) (map[string]bool, error) {
	states, err := r.outbox.States(ctx, kindRegistrationCreate)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, raw := range states {
		var reg struct {
			ID string `bson:"_id"`
		}
		if err := bson.Unmarshal(raw, &reg); err == nil {
			ids[reg.ID] = true
		}
	}
	return ids, nil
}

// seatClaimGrace is how old a seat claim or an address hold without a
// registration must be before the reconciler frees it: far longer than a
// registration request can take.
const seatClaimGrace = 5 * time.Minute

// reconcileEvery runs reconcileSeats at start and then every interval (only
// at start when interval is not positive).
func (r *registrar) reconcileEvery(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return r.reconcileSeats(ctx)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.reconcileSeats(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("seat reconciliation failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// validateEvent checks an event from an organizer and fills defaults.
func validateEvent(ev *Event) error {
	var v web.Validation
	ev.Slug = strings.TrimSpace(ev.Slug)
	if !validSlug(ev.Slug) {
		v.Add("slug", "use 3-64 lowercase letters, digits and dashes, e.g. osce-roundtable-2020")
	}
	ev.Title = strings.TrimSpace(ev.Title)
	checkText(&v, "title", ev.Title, 200, true)
	checkText(&v, "description", ev.Description, 20_000, false)
	if _, err := time.LoadLocation(ev.Timezone); err != nil || ev.Timezone == "" || ev.Timezone == "Local" {
		v.Add("timezone", "must be an IANA time zone such as Europe/Vienna")
	}
	if ev.StartsAt.IsZero() {
		v.Add("starts_at", "required, RFC 3339 with offset, e.g. 2020-11-09T09:00:00+01:00")
	}
	if ev.EndsAt.IsZero() || !ev.EndsAt.After(ev.StartsAt) {
		v.Add("ends_at", "required, and after starts_at")
	}
	checkText(&v, "venue.name", ev.Venue.Name, 200, false)
	checkText(&v, "venue.address", ev.Venue.Address, 500, false)
	if ev.Online.JoinURL != "" && !validURL(ev.Online.JoinURL) {
		v.Add("online.join_url", "must be an http(s) URL")
	}
	if ev.Online.OpensMinutesBefore < 0 || ev.Online.OpensMinutesBefore > 24*60 {
		v.Add("online.opens_minutes_before", "must be between 0 and 1440")
	}
	if ev.Capacity.InPerson < 0 || ev.Capacity.Online < 0 {
		v.Add("capacity", "seats cannot be negative (0 means unlimited)")
	}
	switch ev.Registration.Approval {
	case "":
		ev.Registration.Approval = ApprovalAuto
	case ApprovalAuto, ApprovalManual:
	default:
		v.Add("registration.approval", "must be auto or manual")
	}
	if o, c := ev.Registration.OpensAt, ev.Registration.ClosesAt; o != nil && c != nil && !c.After(*o) {
		v.Add("registration.closes_at", "must be after registration.opens_at")
	}
	validateQuestions(&v, ev.Questions)
	if len(ev.Locales) == 0 {
		ev.Locales = []string{"en"}
	}
	for _, l := range ev.Locales {
		if !supportedLocale(l) {
			v.Add("locales", "unsupported locale %q; use en, fr, de, it, ru or es", l)
		}
	}
	for _, rem := range ev.Reminders {
		if d, err := time.ParseDuration(rem); err != nil || d <= 0 {
			v.Add("reminders", "%q is not a duration such as 24h or 1h", rem)
		}
	}
	if ev.RetentionDays < 0 {
		v.Add("retention_days", "cannot be negative")
	}
	if ev.RetentionDays == 0 {
		ev.RetentionDays = 365
	}
	return v.Err()
}

// openForRegistration returns a problem when the event does not take
// registrations at now.
func openForRegistration(ev *Event, now time.Time) error {
	loc, _ := time.LoadLocation(ev.Timezone)
	closed := func(at time.Time) error {
		return web.Conflict("registration_closed",
			fmt.Sprintf("registration for this event closed on %s", at.In(loc).Format("2006-01-02 15:04 MST")))
	}
	if o := ev.Registration.OpensAt; o != nil && now.Before(*o) {
		return web.Conflict("registration_not_open",
			fmt.Sprintf("registration for this event opens on %s", o.In(loc).Format("2006-01-02 15:04 MST")))
	}
	if c := ev.Registration.ClosesAt; c != nil && !now.Before(*c) {
		return closed(*c)
	}
	if !now.Before(ev.EndsAt) {
		return closed(ev.EndsAt)
	}
	return nil
}

func supportedLocale(l string) bool {
	switch l {
	case "en", "fr", "de", "it", "ru", "es":
		return true
	}
	return false
}
