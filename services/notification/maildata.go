package notification

import (
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

// Email kinds added with the reminders, agenda notices and announcements
// (the registration kinds are in registrations.go).
const (
	kindApproved     = "approved"       // confirmed or waitlisted after an organiser's approval
	kindReminder     = "reminder"       // the event starts in Offset
	kindAgenda       = "agenda_changed" // sessions that changed since the last notice
	kindAnnouncement = "announcement"   // an organiser's message
)

// letter is everything an email of any kind is made from: the contract
// between what decides to send (registrations.go, reminders, notices,
// announcements) and what writes it (templates.go). Every string is plain
// text as given; the templates escape and format it. Times are instants;
// the templates show them in EventZone and, for online attendees whose
// zone differs, in LocalZone too, formatted for the recipient's language.
type letter struct {
	Kind   string
	Locale string // the recipient's; templates fall back to the event's first, then English

	To, Name string // address and name of the recipient

	// The event.
	Title                   string
	EventStart, EventEnd    time.Time
	EventZone               string // IANA
	VenueName, VenueAddress string
	EventURL, AgendaURL     string

	// The registration.
	Mode      string // events.ModeInPerson or events.ModeOnline
	LocalZone string // the attendee's own zone, "" when unknown
	Status    string // the standing registration's status (duplicate attempts)
	Reason    string // why: "full", "closed", "approved", "mode_switched", an organiser's words
	ManageURL string
	JoinURL   string // the personal join link, only for confirmed online attendees

	// Reminders: how long before the start this one is sent, and the
	// sessions to show (the day's agenda in person; each with its personal
	// join link online).
	Offset time.Duration

	// Reminders and agenda notices: sessions. For a notice, only those
	// whose change affects the recipient, with what changed.
	Sessions []sessionLine

	// Announcements: the organiser's words, and the one-click way out of
	// further announcements.
	Subject, Body  string
	UnsubscribeURL string

	// Signature closes every email ("The organisers of <event>" unless
	// MAIL_FROM_NAME says otherwise).
	Signature string
}

// sessionLine is one session in an email.
type sessionLine struct {
	ID         string
	Title      string
	Start, End time.Time
	Room       string
	Format     string // events.Format*
	// JoinURL is the recipient's personal link into this session
	// (/j/{token}?session={id}), for online attendees only.
	JoinURL   string
	Cancelled bool
	// Kinds says what changed (events.Change*), for agenda notices; Before
	// is the session as it was, for "was 10:00–11:00" and "was Neuer Saal".
	Kinds  []string
	Before *events.Session
}

// online reports whether the letter goes to an online attendee.
func (l letter) online() bool { return l.Mode == events.ModeOnline }
