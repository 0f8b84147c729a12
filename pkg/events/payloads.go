package events

import "time"

// Attendance modes.
const (
	ModeInPerson = "in_person"
	ModeOnline   = "online"
)

// Registration statuses.
const (
	StatusConfirmed  = "confirmed"
	StatusWaitlisted = "waitlisted"
	StatusPending    = "pending"
	StatusRejected   = "rejected"
	StatusCancelled  = "cancelled"
)

// Venue is where the in-person part happens.
type Venue struct {
	Name    string `json:"name,omitempty" bson:"name,omitempty"`
	Address string `json:"address,omitempty" bson:"address,omitempty"`
}

// Capacity is the number of seats per mode; 0 means unlimited.
type Capacity struct {
	InPerson int `json:"in_person" bson:"in_person"`
	Online   int `json:"online" bson:"online"`
}

// Event is the payload of registration.v1.event.{created,updated}: what other
// services need to know about an event (event-carried state transfer).
type Event struct {
	ID        string    `json:"id"`
	Version   int64     `json:"version"`
	Slug      string    `json:"slug"`
	Title     string    `json:"title"`
	Timezone  string    `json:"timezone"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	Venue     Venue     `json:"venue"`
	Capacity  Capacity  `json:"capacity"`
	Locales   []string  `json:"locales,omitempty"`
	Reminders []string  `json:"reminders,omitempty"`
	PublicURL string    `json:"public_url"`
}

// Registration is the payload of every registration.v1.registration.* event:
// enough for a consumer to act (render an email, keep a replica) without
// calling back.
type Registration struct {
	ID        string `json:"id"`
	Version   int64  `json:"version"`
	EventID   string `json:"event_id"`
	Status    string `json:"status"`
	Mode      string `json:"mode"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	Locale    string `json:"locale"`
	Timezone  string `json:"timezone,omitempty"`
	ManageURL string `json:"manage_url"`
	JoinURL   string `json:"join_url,omitempty"`
	// Reason explains a rejection ("full") or a duplicate attempt.
	Reason string `json:"reason,omitempty"`
	// Event is a copy of the event as it stood, so a consumer that has not
	// seen the event yet can still render an email.
	Event Event `json:"event"`
}

// Attendance is the payload of registration.v1.attendance.joined: an online
// attendee used their join link.
type Attendance struct {
	RegistrationID string `json:"registration_id"`
	EventID        string `json:"event_id"`
	// SessionID is the agenda session joined, when the link named one.
	SessionID string    `json:"session_id,omitempty"`
	At        time.Time `json:"at"`
}

// MailJob is the payload of mail.v1.send: one email, fully rendered.
type MailJob struct {
	ID             string       `json:"id"`
	EventID        string       `json:"event_id,omitempty"`
	RegistrationID string       `json:"registration_id,omitempty"`
	Kind           string       `json:"kind"`
	To             string       `json:"to"`
	ToName         string       `json:"to_name,omitempty"`
	Subject        string       `json:"subject"`
	Text           string       `json:"text"`
	HTML           string       `json:"html,omitempty"`
	Attachments    []Attachment `json:"attachments,omitempty"`
	// Headers are extra header fields, e.g. List-Unsubscribe and
	// List-Unsubscribe-Post on announcements (RFC 8058). Transactional
	// emails carry none.
	Headers map[string]string `json:"headers,omitempty"`
}

// Attachment is a file sent with an email.
type Attachment struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Data        []byte `json:"data"`
}

// Mail delivery statuses.
const (
	MailQueued   = "queued"
	MailSent     = "sent"
	MailDeferred = "deferred"
	MailFailed   = "failed"
)

// MailStatus is the payload of mail.v1.status.*.
type MailStatus struct {
	JobID   string    `json:"job_id"`
	EventID string    `json:"event_id,omitempty"`
	Status  string    `json:"status"`
	Attempt int       `json:"attempt"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}
