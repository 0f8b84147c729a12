package registration

import (
	"fmt"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

// Event is a conference as the organizers define it.
type Event struct {
	ID            string          `bson:"_id" json:"id"`
	Version       int64           `bson:"version" json:"version"`
	Slug          string          `bson:"slug" json:"slug"`
	Title         string          `bson:"title" json:"title"`
	Description   string          `bson:"description" json:"description"`
	Timezone      string          `bson:"timezone" json:"timezone"`
	StartsAt      time.Time       `bson:"starts_at" json:"starts_at"`
	EndsAt        time.Time       `bson:"ends_at" json:"ends_at"`
	Venue         events.Venue    `bson:"venue" json:"venue"`
	Online        Online          `bson:"online" json:"online"`
	Capacity      events.Capacity `bson:"capacity" json:"capacity"`
	Registration  Rules           `bson:"registration" json:"registration"`
	Questions     []Question      `bson:"questions" json:"questions"`
	Locales       []string        `bson:"locales" json:"locales"`
	Reminders     []string        `bson:"reminders" json:"reminders"`
	RetentionDays int             `bson:"retention_days" json:"retention_days"`
	CreatedAt     time.Time       `bson:"created_at" json:"created_at"`
	UpdatedAt     time.Time       `bson:"updated_at" json:"updated_at"`
	// Revision is the id of the change that made this version, so a replayed
	// change can be told from a concurrent one.
	Revision string `bson:"revision,omitempty" json:"-"`
}

// Online is how online attendees join.
type Online struct {
	JoinURL            string `bson:"join_url" json:"join_url"`
	OpensMinutesBefore int    `bson:"opens_minutes_before" json:"opens_minutes_before"`
}

// Rules say when and how people may register.
type Rules struct {
	OpensAt  *time.Time `bson:"opens_at,omitempty" json:"opens_at,omitempty"`
	ClosesAt *time.Time `bson:"closes_at,omitempty" json:"closes_at,omitempty"`
	// Approval is auto (confirmed at once while seats last) or manual.
	Approval string `bson:"approval" json:"approval"`
	Waitlist bool   `bson:"waitlist" json:"waitlist"`
}

// Question is an extra field on the registration form.
type Question struct {
	ID       string   `bson:"id" json:"id"`
	Label    string   `bson:"label" json:"label"`
	Type     string   `bson:"type" json:"type"`
	Required bool     `bson:"required" json:"required"`
	Options  []string `bson:"options,omitempty" json:"options,omitempty"`
}

// Approval modes.
const (
	ApprovalAuto   = "auto"
	ApprovalManual = "manual"
)

// capacityFor returns the seats of mode; 0 is unlimited.
func (e *Event) capacityFor(mode string) int {
	if mode == events.ModeOnline {
		return e.Capacity.Online
	}
	return e.Capacity.InPerson
}

// payload is the event as other services see it.
func (e *Event) payload(public string) events.Event {
	return events.Event{
		ID: e.ID, Version: e.Version, Slug: e.Slug, Title: e.Title, Timezone: e.Timezone,
		StartsAt: e.StartsAt, EndsAt: e.EndsAt, Venue: e.Venue, Capacity: e.Capacity,
		Locales: e.Locales, Reminders: e.Reminders, PublicURL: public + "/e/" + e.Slug,
	}
}

// Registration is one participant's registration for one event.
type Registration struct {
	ID      string `bson:"_id" json:"id"`
	EventID string `bson:"event_id" json:"event_id"`
	// EmailKey is unique per event while the registration is active; it
	// is what makes a second registration with the same address a duplicate.
	EmailKey   string         `bson:"email_key" json:"-"`
	Email      string         `bson:"email" json:"email"`
	Name       string         `bson:"name" json:"name"`
	Mode       string         `bson:"mode" json:"mode"`
	Status     string         `bson:"status" json:"status"`
	Reason     string         `bson:"reason,omitempty" json:"reason,omitempty"`
	Locale     string         `bson:"locale" json:"locale"`
	Timezone   string         `bson:"timezone,omitempty" json:"timezone,omitempty"`
	Answers    map[string]any `bson:"answers,omitempty" json:"answers,omitempty"`
	Consent    Consent        `bson:"consent" json:"consent"`
	WaitlistOK bool           `bson:"waitlist_ok" json:"waitlist_ok"`
	// Seat is the seat number a confirmed registration holds in its mode
	// (from 1), 0 otherwise. SeatKey makes it unique per event and mode
	// under a unique index (a fence should two deciders ever overlap);
	// without a seat it is unique to the registration.
	Seat    int    `bson:"seat" json:"-"`
	SeatKey string `bson:"seat_key" json:"-"`
	// Queue orders the waiting list: the position of the request that put
	// the registration on it (its stream sequence before requests were
	// grouped; 0 when not waiting).
	Queue uint64 `bson:"queue,omitempty" json:"-"`
	// WantsMode is the other mode a confirmed registration asked to switch
	// to while it was full: it waits on that mode's list and keeps its seat
	// until it gets one there.
	WantsMode   string     `bson:"wants_mode,omitempty" json:"wants_mode,omitempty"`
	CheckedInAt *time.Time `bson:"checked_in_at,omitempty" json:"checked_in_at,omitempty"`
	ErasedAt    *time.Time `bson:"erased_at,omitempty" json:"erased_at,omitempty"`
	// RequestID is the id of the request that created the registration.
	RequestID   string            `bson:"request_id" json:"-"`
	Version     int64             `bson:"version" json:"version"`
	LinkVersion int               `bson:"link_version" json:"-"`
	CreatedAt   time.Time         `bson:"created_at" json:"created_at"`
	UpdatedAt   time.Time         `bson:"updated_at" json:"updated_at"`
	Meta        map[string]string `bson:"meta,omitempty" json:"-"`
}

// Consent records what the participant agreed to, and when.
type Consent struct {
	Given       bool      `bson:"given" json:"given"`
	TextVersion string    `bson:"text_version" json:"text_version"`
	At          time.Time `bson:"at" json:"at"`
}

// ConsentTextVersion names the privacy text shown on the form; bump it
// whenever that text changes.
const ConsentTextVersion = "2026-11-privacy-v1"

// emailKey is what makes a second registration with an address a
// duplicate: the event and the address, compared case-insensitively.
func emailKey(eventID, email string) string {
	return eventID + "|" + strings.ToLower(email)
}

// live reports whether the registration holds its address: confirmed,
// waiting or awaiting approval.
func (r *Registration) live() bool {
	switch r.Status {
	case events.StatusConfirmed, events.StatusWaitlisted, events.StatusPending:
		return true
	}
	return false
}

// seatKey is the value of SeatKey for the registration as it stands.
func (r *Registration) seatKey() string {
	if r.Seat > 0 {
		return fmt.Sprintf("%s:%s:%d", r.EventID, r.Mode, r.Seat)
	}
	return "-:" + r.ID
}

// addressKey is the value of EmailKey for the registration as it stands:
// the address while it is live, something unique to it once it is not, so
// the address may register again.
func (r *Registration) addressKey() string {
	if r.live() {
		return emailKey(r.EventID, r.Email)
	}
	return r.EventID + "|-|" + r.ID
}
