package registration

import (
	"time"
)

// Request kinds: what participants and organisers can ask of a
// registration. Each is appended to the REGISTRATION_REQUESTS stream and
// decided in stream order by the decider.
const (
	kindRegister    = "register"
	kindCancel      = "cancel"       // by the participant
	kindOrgCancel   = "org_cancel"   // by an organiser
	kindSwitch      = "switch"       // change of mode
	kindEdit        = "edit"         // name, answers, locale, time zone
	kindApprove     = "approve"      // pending → seat or waiting list
	kindReject      = "reject"       // by an organiser
	kindCheckIn     = "check_in"     // arrival at the venue, by an organiser
	kindRotate      = "rotate_links" // old manage and join links die
	kindResend      = "resend_links" // email my links again
	kindErase       = "erase"        // anonymise, by the participant
	kindRetention   = "retention"    // anonymise a past event's registrations
	kindEventUpdate = "event_update" // an organiser's edit of the event
)

// request is one message on the requests stream.
type request struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	EventID string    `json:"event_id"`
	At      time.Time `json:"at"`
	// Reply is a NATS inbox where the HTTP handler waits for the outcome
	// (organiser and manage-page actions); empty when nobody waits.
	Reply       string `json:"reply,omitempty"`
	TraceParent string `json:"traceparent,omitempty"`

	// RegID names the registration a change is for; LinkVersion is the
	// version of the participant's link that asked for it (0 for an
	// organiser), so a request made with a link rotated meanwhile fails.
	RegID       string `json:"registration_id,omitempty"`
	LinkVersion int    `json:"link_version,omitempty"`

	Register *newRegistrationData `json:"register,omitempty"`
	Mode     string               `json:"mode,omitempty"`
	Edit     *editData            `json:"edit,omitempty"`
	Event    *Event               `json:"event,omitempty"`
	From     int64                `json:"from,omitempty"`
}

// newRegistrationData is a validated registration as the form or the API
// sent it.
type newRegistrationData struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Email      string         `json:"email"`
	Mode       string         `json:"mode"`
	Locale     string         `json:"locale"`
	Timezone   string         `json:"timezone,omitempty"`
	Answers    map[string]any `json:"answers,omitempty"`
	Consent    Consent        `json:"consent"`
	WaitlistOK bool           `json:"waitlist_ok"`
}

// editData is a participant's change of details; nil fields stay.
type editData struct {
	Name     *string        `json:"name,omitempty"`
	Answers  map[string]any `json:"answers,omitempty"`
	Locale   *string        `json:"locale,omitempty"`
	Timezone *string        `json:"timezone,omitempty"`
}

// reply is the outcome the decider sends to a waiting handler.
type reply struct {
	// Status is "ok" or a problem code (not_found, conflict, link_invalid,
	// event_changed, full).
	Status       string        `json:"status"`
	Detail       string        `json:"detail,omitempty"`
	Registration *Registration `json:"registration,omitempty"`
	Event        *Event        `json:"event,omitempty"`
}

const replyOK = "ok"
