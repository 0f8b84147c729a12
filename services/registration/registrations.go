package registration

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
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

// newRegistration validates req against ev and returns the registration
// to ask the decider for.
func newRegistration(ev *Event, req *RegisterRequest) (*newRegistrationData, error) {
	var v web.Validation
	name := strings.TrimSpace(req.Name)
	v.Text("name", name, maxName, true)
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
	checkLocale(&v, locale)
	checkTimezone(&v, req.Timezone)
	answers := validateAnswers(&v, ev.Questions, req.Answers)
	if !req.Consent {
		v.Add("consent", "we can only register you if you agree to the privacy notice")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return &newRegistrationData{
		ID: events.NewID(), Email: email, Name: name, Mode: req.Mode, Locale: locale, Timezone: req.Timezone,
		Answers: answers, WaitlistOK: req.WaitlistOK,
		Consent: Consent{Given: true, TextVersion: ConsentTextVersion, At: time.Now().UTC()},
	}, nil
}

func checkLocale(v *web.Validation, locale string) {
	if !supportedLocale(locale) {
		v.Add("locale", "unsupported locale %q; use en, fr, de, it, ru or es", locale)
	}
}

func checkTimezone(v *web.Validation, tz string) {
	if tz == "" {
		return
	}
	if _, err := i18n.LoadZone(tz); err != nil {
		v.Add("timezone", "must be an IANA time zone such as Asia/Tokyo")
	}
}

// register asks the decider to register n. Every valid request takes the
// same path and gets the same answer, whether the address is new or
// registered already: nothing is read or written but the requests stream.
func (r *registrar) register(ctx context.Context, ev *Event, n *newRegistrationData, idempotencyKey string) error {
	req := &request{ID: events.NewID(), Kind: kindRegister, EventID: ev.ID, Register: n}
	return r.submit(ctx, req, idempotencyKey)
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
