package registration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// registrar is the registration service: its handlers, the decider that
// changes registrations, and the outbox appliers for events and joins.
type registrar struct {
	cfg       Config
	log       *slog.Logger
	store     *regStore
	outbox    *store.Outbox
	bus       *bus.Bus
	committer *bus.Committer
	links     *links.Signer
	public    string
	cache     *eventCache
	resends   *resendLimiter
	i18n      *i18n.Catalog
	agendas   *agendaReplica
}

const source = "plenary/registration"

// Outbox kinds.
const (
	kindEventCreate    = "event.create"
	kindAttendanceJoin = "attendance.join"
)

func (r *registrar) registerAppliers() {
	r.outbox.Register(kindEventCreate, r.applyEventCreate)
	r.outbox.Register(kindAttendanceJoin, r.applyAttendanceJoin)
}

// journalize fills a journal entry from a decision: the after-states, the
// outcomes, the reply for a waiting handler, and the outcome events built
// from them.
func (r *registrar) journalize(e *journalEntry, req *request, st *eventState, res result) error {
	e.Regs, e.Event, e.TraceParent = res.changed, res.event, req.TraceParent
	if res.event != nil {
		e.Outcomes = append(e.Outcomes, journalOutcome{Type: events.EventUpdated})
	}
	changed := make(map[string]bool, len(res.changed))
	for _, c := range res.changed {
		changed[c.ID] = true
	}
	for _, o := range res.outcomes {
		jo := journalOutcome{Type: o.typ, RegID: o.reg.ID, Reason: o.reason}
		if !changed[o.reg.ID] {
			reg := o.reg
			jo.Reg = &reg
		}
		e.Outcomes = append(e.Outcomes, jo)
	}
	if req.Reply != "" {
		body, err := json.Marshal(res.reply)
		if err != nil {
			return err
		}
		e.ReplyBody = body
	}
	var ev *Event
	if st != nil {
		ev = st.ev
	}
	return r.buildMessages(e, ev)
}

// buildMessages makes the entry's outcome events, the same bytes every time
// for the same entry and event: ids derived from the request's, time the
// decision's. ev is the event the payloads carry a copy of.
func (r *registrar) buildMessages(e *journalEntry, ev *Event) error {
	e.Messages = e.Messages[:0]
	regs := make(map[string]*Registration, len(e.Regs))
	for i := range e.Regs {
		regs[e.Regs[i].ID] = &e.Regs[i]
	}
	for k, o := range e.Outcomes {
		var subject string
		var data any
		if o.Type == events.EventUpdated {
			if e.Event == nil {
				return fmt.Errorf("journal %d: event update without the event", e.Seq)
			}
			subject, data = e.Event.ID, e.Event.payload(r.public)
		} else {
			reg := o.Reg
			if reg == nil {
				reg = regs[o.RegID]
			}
			if reg == nil || ev == nil {
				return fmt.Errorf("journal %d: outcome %d without its registration or event", e.Seq, k)
			}
			cp := *reg
			if o.Reason != "" {
				cp.Reason = o.Reason
			}
			subject, data = cp.ID, r.payload(ev, &cp)
		}
		env, err := events.NewWithID(fmt.Sprintf("%s-%d", e.RequestID, k+1), source, o.Type, subject, data)
		if err != nil {
			return err
		}
		env.Time, env.TraceParent = e.At, e.TraceParent
		body, err := env.Marshal()
		if err != nil {
			return err
		}
		e.Messages = append(e.Messages, journalMsg{Subject: o.Type, ID: env.ID, Data: body})
	}
	return nil
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

// validateEvent checks an event from an organizer and fills defaults.
func validateEvent(ev *Event) error {
	var v web.Validation
	ev.Slug = strings.TrimSpace(ev.Slug)
	if !validSlug(ev.Slug) {
		v.Add("slug", "use 3-64 lowercase letters, digits and dashes, e.g. osce-roundtable-2020")
	}
	ev.Title = strings.TrimSpace(ev.Title)
	v.Text("title", ev.Title, 200, true)
	v.Text("description", ev.Description, 20_000, false)
	if _, err := i18n.LoadZone(ev.Timezone); err != nil {
		v.Add("timezone", "must be an IANA time zone such as Europe/Vienna")
	}
	if ev.StartsAt.IsZero() {
		v.Add("starts_at", "required, RFC 3339 with offset, e.g. 2020-11-09T09:00:00+01:00")
	}
	if ev.EndsAt.IsZero() || !ev.EndsAt.After(ev.StartsAt) {
		v.Add("ends_at", "required, and after starts_at")
	}
	v.Text("venue.name", ev.Venue.Name, 200, false)
	v.Text("venue.address", ev.Venue.Address, 500, false)
	if ev.Online.JoinURL != "" && !web.ValidURL(ev.Online.JoinURL) {
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
	loc := i18n.ZoneOrUTC(ev.Timezone)
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
