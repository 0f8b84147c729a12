package registration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// RegisterRequest is what a participant sends.
type RegisterRequest struct {
	Name       string         `json:"name" form:"name"`
	Email      string         `json:"email" form:"email"`
	Mode       string         `json:"mode" form:"mode"`
	Locale     string         `json:"locale" form:"locale"`
	Timezone   string         `json:"timezone" form:"timezone"`
	Answers    map[string]any `json:"answers" form:"-"`
	Consent    bool           `json:"consent" form:"consent"`
	WaitlistOK bool           `json:"waitlist_ok" form:"waitlist_ok"`
}

// newRegistration validates req against ev and returns the registration to
// create, without an outcome yet.
func newRegistration(ev *Event, req *RegisterRequest) (*Registration, error) {
	var v web.Validation
	name := strings.TrimSpace(req.Name)
	checkText(&v, "name", name, maxName, true)
	email := normalizeEmail(&v, req.Email)
	switch req.Mode {
	case events.ModeInPerson, events.ModeOnline:
	case "":
		v.Add("mode", "required: in_person or online")
	default:
		v.Add("mode", "must be in_person or online")
	}
	locale := req.Locale
	if locale == "" {
		locale = ev.Locales[0]
	}
	if !supportedLocale(locale) {
		v.Add("locale", "unsupported locale %q; use en, fr, de, it, ru or es", locale)
	}
	if req.Timezone != "" {
		if _, err := time.LoadLocation(req.Timezone); err != nil || req.Timezone == "Local" {
			v.Add("timezone", "must be an IANA time zone such as Asia/Tokyo")
		}
	}
	answers := validateAnswers(&v, ev.Questions, req.Answers)
	if !req.Consent {
		v.Add("consent", "we can only register you if you agree to the privacy notice")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	return &Registration{
		ID:          events.NewID(),
		EventID:     ev.ID,
		EmailKey:    emailKey(ev.ID, email),
		Email:       email,
		Name:        name,
		Mode:        req.Mode,
		Locale:      locale,
		Timezone:    req.Timezone,
		Answers:     answers,
		Consent:     Consent{Given: true, TextVersion: ConsentTextVersion, At: now},
		WaitlistOK:  req.WaitlistOK,
		Version:     1,
		LinkVersion: 1,
		CreatedAt:   now,
		UpdatedAt:   now,
	}, nil
}

// register decides the outcome of a new registration and records it. It
// returns nil for a duplicate too: the participant learns by email, and the
// response must not tell who is registered.
func (r *registrar) register(ctx context.Context, ev *Event, reg *Registration) error {
	hold, err := r.store.holdAddress(ctx, reg)
	if errors.Is(err, errDuplicateEmail) {
		return r.registerDuplicate(ctx, reg)
	}
	if err != nil {
		return err
	}
	reg.Hold = hold
	if err := r.decide(ctx, ev, reg); err != nil {
		return err
	}
	if reg.Status == events.StatusRejected {
		// A rejection does not hold the address: the person may try again,
		// in another mode or once seats free up.
		if err := r.store.releaseHold(ctx, reg.Hold); err != nil {
			return err
		}
		reg.Hold, reg.EmailKey = "", reg.EmailKey+"|rejected|"+reg.ID
	}
	env, err := events.New(source, statusEvent(reg.Status), reg.ID, r.payload(ev, reg))
	if err != nil {
		return err
	}
	entry, err := store.NewEntry(kindRegistrationCreate, env.Traced(ctx), reg)
	if err != nil {
		return err
	}
	// On error the hold and the seat stay: the outbox entry may still be
	// completed by the relay. If it never is, the reconciler frees them.
	err = r.outbox.Write(ctx, entry)
	if errors.Is(err, store.ErrDeferred) {
		r.log.Info("registration recorded; the relay will finish it", "registration_id", reg.ID, "err", err)
		return nil
	}
	return err
}

// decide sets the status: pending under manual approval, confirmed while
// seats last, then waitlisted or rejected as full.
func (r *registrar) decide(ctx context.Context, ev *Event, reg *Registration) error {
	if ev.Registration.Approval == ApprovalManual {
		reg.Status = events.StatusPending
		return nil
	}
	seat, err := r.store.claimSeat(ctx, ev, reg)
	if err != nil {
		return err
	}
	switch {
	case seat != "":
		reg.Status, reg.Seat = events.StatusConfirmed, seat
	case ev.Registration.Waitlist && reg.WaitlistOK:
		reg.Status = events.StatusWaitlisted
	default:
		reg.Status, reg.Reason = events.StatusRejected, "full"
	}
	return nil
}

// duplicateState is what a duplicate attempt's outbox entry needs: the
// address it was for. The registration holding the address may still be on
// its way (a double submission), so the applier waits for it.
type duplicateState struct {
	EmailKey  string    `bson:"email_key"`
	EventID   string    `bson:"event_id"`
	CreatedAt time.Time `bson:"created_at"`
}

// registerDuplicate announces an attempt to register an address that
// already holds a place. The response is the same 202 as for any
// registration.
func (r *registrar) registerDuplicate(ctx context.Context, reg *Registration) error {
	env, err := events.New(source, events.RegistrationDuplicateAttempt, reg.ID, events.Registration{EventID: reg.EventID})
	if err != nil {
		return err
	}
	entry, err := store.NewEntry(kindRegistrationDuplicate, env.Traced(ctx),
		duplicateState{EmailKey: reg.EmailKey, EventID: reg.EventID, CreatedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := r.outbox.Write(ctx, entry); err != nil && !errors.Is(err, store.ErrDeferred) {
		return err
	}
	return nil
}

// duplicateWait is how long a duplicate attempt waits for the registration
// holding its address to be recorded before it is dropped (the holder
// crashed before it was recorded; the reconciler frees its hold).
const duplicateWait = 10 * time.Minute

// applyRegistrationDuplicate announces the duplicate attempt with the
// holder's registration, links included, once that registration exists.
func (r *registrar) applyRegistrationDuplicate(ctx context.Context, e *store.Entry) error {
	var d duplicateState
	if err := decodeState(e, &d); err != nil {
		return store.Discard(err)
	}
	existing, err := r.store.holder(ctx, d.EmailKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// The holder gave the address back meanwhile (it was rejected).
		return store.Discard(fmt.Errorf("duplicate attempt %s: nobody holds the address any more", e.ID))
	case errors.Is(err, errNotRecorded):
		if time.Since(d.CreatedAt) > duplicateWait {
			return store.Discard(fmt.Errorf("duplicate attempt %s: %w", e.ID, err))
		}
		return fmt.Errorf("duplicate attempt %s: %w", e.ID, err)
	case err != nil:
		return err
	}
	return r.announceDuplicate(ctx, e, existing)
}

// announceDuplicate rewrites e to announce a duplicate attempt against
// existing, keeping e's id and trace.
func (r *registrar) announceDuplicate(ctx context.Context, e *store.Entry, existing *Registration) error {
	ev, err := r.store.eventByID(ctx, existing.EventID)
	if err != nil {
		return err
	}
	p := r.payload(ev, existing)
	p.Reason = "duplicate_attempt"
	env, err := events.NewWithID(e.ID, source, events.RegistrationDuplicateAttempt, existing.ID, p)
	if err != nil {
		return err
	}
	if orig, err := events.Parse(e.Message); err == nil {
		env.TraceParent = orig.TraceParent // the attempt's trace, whoever applies it
	}
	body, err := env.Marshal()
	if err != nil {
		return err
	}
	e.Subject, e.Message = env.Type, body
	return nil
}

// applyRegistrationCreate inserts the registration. Should the address turn
// out to be registered already (the holds make this a safety net, not a
// path), it gives back this attempt's seat and announces a duplicate
// attempt instead, so the address's owner gets an "already registered"
// email with their own links.
func (r *registrar) applyRegistrationCreate(ctx context.Context, e *store.Entry) error {
	var reg Registration
	if err := decodeState(e, &reg); err != nil {
		return store.Discard(err)
	}
	err := r.store.insertRegistration(ctx, &reg)
	if !errors.Is(err, errDuplicateEmail) {
		return err
	}
	if err := r.store.releaseSeat(ctx, reg.Seat); err != nil {
		return err
	}
	if err := r.store.releaseHold(ctx, reg.Hold); err != nil {
		return err
	}
	existing, err := r.store.registrationByEmailKey(ctx, reg.EmailKey)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("registration %s: duplicate address vanished; retrying", reg.ID)
	}
	if err != nil {
		return err
	}
	return r.announceDuplicate(ctx, e, existing)
}

func statusEvent(status string) string {
	switch status {
	case events.StatusConfirmed:
		return events.RegistrationConfirmed
	case events.StatusWaitlisted:
		return events.RegistrationWaitlisted
	case events.StatusPending:
		return events.RegistrationPending
	case events.StatusRejected:
		return events.RegistrationRejected
	case events.StatusCancelled:
		return events.RegistrationCancelled
	}
	return events.RegistrationUpdated
}

// payload is a registration as other services see it, links included.
func (r *registrar) payload(ev *Event, reg *Registration) events.Registration {
	p := events.Registration{
		ID: reg.ID, Version: reg.Version, EventID: reg.EventID, Status: reg.Status, Mode: reg.Mode,
		Name: reg.Name, Email: reg.Email, Locale: reg.Locale, Timezone: reg.Timezone, Reason: reg.Reason,
		ManageURL: r.public + "/r/" + r.links.Token(links.Manage, reg.ID, reg.LinkVersion),
		Event:     ev.payload(r.public),
	}
	if reg.Mode == events.ModeOnline {
		p.JoinURL = r.public + "/j/" + r.links.Token(links.Join, reg.ID, reg.LinkVersion)
	}
	return p
}

// byToken returns the registration a participant's token opens for
// purpose. Forged, malformed and rotated tokens all get the same not-found
// answer.
func (r *registrar) byToken(ctx context.Context, purpose, token string) (*Registration, *Event, error) {
	notFound := web.NotFound("this link is not valid (any more); use the newest email we sent you, or ask for a new link")
	id, version, err := r.links.Parse(purpose, token)
	if err != nil {
		return nil, nil, notFound
	}
	reg, err := r.store.registrationByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, notFound
	}
	if err != nil {
		return nil, nil, err
	}
	if reg.LinkVersion != version {
		return nil, nil, notFound
	}
	ev, err := r.store.eventByID(ctx, reg.EventID)
	if err != nil {
		return nil, nil, err
	}
	return reg, ev, nil
}

// byManageToken returns the registration a manage token opens.
func (r *registrar) byManageToken(ctx context.Context, token string) (*Registration, *Event, error) {
	return r.byToken(ctx, links.Manage, token)
}
