package events

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Event types. Each is also the NATS subject its envelope is published on.
const (
	EventCreated = "registration.v1.event.created"
	EventUpdated = "registration.v1.event.updated"

	RegistrationReceived         = "registration.v1.registration.received"
	RegistrationConfirmed        = "registration.v1.registration.confirmed"
	RegistrationWaitlisted       = "registration.v1.registration.waitlisted"
	RegistrationPending          = "registration.v1.registration.pending"
	RegistrationRejected         = "registration.v1.registration.rejected"
	RegistrationCancelled        = "registration.v1.registration.cancelled"
	RegistrationPromoted         = "registration.v1.registration.promoted"
	RegistrationUpdated          = "registration.v1.registration.updated"
	RegistrationDuplicateAttempt = "registration.v1.registration.duplicate_attempt"
	RegistrationLinkRequested    = "registration.v1.registration.link_requested"
	RegistrationErased           = "registration.v1.registration.erased"
	AttendanceJoined             = "registration.v1.attendance.joined"

	AgendaReleasePublished = "agenda.v1.release.published"

	MailSend           = "mail.v1.send"
	MailStatusSent     = "mail.v1.status.sent"
	MailStatusDeferred = "mail.v1.status.deferred"
	MailStatusFailed   = "mail.v1.status.failed"
)

// Subject filters for consumers.
const (
	AllEvents        = "registration.v1.event.>"
	AllRegistrations = "registration.v1.registration.>"
	AllMailStatus    = "mail.v1.status.>"
)

// Stream names.
const (
	StreamRegistration = "REGISTRATION"
	StreamAgenda       = "AGENDA"
	StreamMail         = "MAIL"
	StreamMailStatus   = "MAIL_STATUS"
	StreamDLQ          = "DLQ"
	// StreamRequests holds what participants and organisers ask of
	// registrations, in arrival order, until the decider has decided it
	// (DESIGN §5.5). Only the registration service reads or writes it.
	StreamRequests = "REGISTRATION_REQUESTS"
	// StreamMailSent is the mailer's sent ledger: the ids of the jobs whose
	// email the SMTP server accepted, on mail-sent.v1.>, so that a
	// redelivered job is not sent again (DESIGN §5.3). Only the mailer reads
	// or writes it.
	StreamMailSent = "MAIL_SENT"
)

// RequestSubject is the subject of a registration request of kind for event:
// registration-requests.v1.<event>.<kind> (outside registration.v1.>, which
// belongs to the REGISTRATION stream).
func RequestSubject(eventID, kind string) string {
	return "registration-requests.v1." + eventID + "." + kind
}

// RequestGroupSubject is the subject of a group of registration requests
// stored as one message (bus.Committer): requests of any event and kind.
const RequestGroupSubject = "registration-requests.v1.group"

// RequestWindow is how long NATS remembers a request's Nats-Msg-Id: the
// lifetime of an Idempotency-Key.
const RequestWindow = 30 * time.Minute

// DLQSubject is where a consumer's poison messages go: dlq.<stream>.<consumer>.
func DLQSubject(stream, consumer string) string {
	return "dlq." + stream + "." + consumer
}

const retention = 30 * 24 * time.Hour

// MailRetention is how long a mail job stays on the MAIL stream: longer than
// a mailer retries a job, so that an email failed after a long outage can
// be replayed from it.
const MailRetention = 7 * 24 * time.Hour

// DuplicateWindow is how long NATS remembers a Nats-Msg-Id. It bounds how late
// a replayed publish (outbox relay, redelivered handler) is still dropped.
const DuplicateWindow = 10 * time.Minute

// Streams returns the stream definitions, keyed by name. replicas is 1 for a
// single server and 3 for a cluster.
func Streams(replicas int) map[string]jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	limits := func(name, subject, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subject},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      retention,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			Duplicates:  DuplicateWindow,
		}
	}
	requests := limits(StreamRequests, "registration-requests.v1.>", "registration requests until decided")
	requests.MaxAge = 7 * 24 * time.Hour
	requests.Duplicates = RequestWindow
	// Requests arriving together are stored as one message (bus.Committer,
	// RequestGroupSubject). Atomic batches are allowed still, as on the
	// streams created when requests were atomic batches: nothing sends one
	// here now, and the setting costs nothing unused.
	requests.AllowAtomicPublish = true
	registration := limits(StreamRegistration, "registration.v1.>", "events and registrations")
	registration.AllowAtomicPublish = true
	status := limits(StreamMailStatus, AllMailStatus, "sent / deferred / failed")
	status.AllowAtomicPublish = true
	// MAIL keeps limits retention with a week's max age, not work-queue
	// retention: on a work queue every ack deletes the message, an fsync
	// each (NOTES.md), which would cap the mailer near the disk's fsync
	// rate. One durable consumer (the mailer) is what makes it a queue.
	mail := limits(StreamMail, MailSend, "one message = one email to send")
	mail.MaxAge = MailRetention
	mail.AllowAtomicPublish = true
	// The mailer's sent records, one message per group commit (one fsync
	// for the emails of the mailer's window). Kept a day longer than MAIL
	// keeps the jobs, so a record outlives every redelivery of its job.
	sent := limits(StreamMailSent, "mail-sent.v1.>", "the mailer's sent ledger: the emails sent, a group per message")
	sent.MaxAge = MailRetention + 24*time.Hour
	if replicas == 1 {
		// The one stream not fsynced on every write (JetStream's async
		// persist mode; not allowed on replicated streams, which the
		// replicas make durable): losing a record can only make the mailer
		// send an email twice, never lose one, and the record's fsync was
		// the mailer's limit (each connection waits for the record of its
		// last email before the next "."). A crash of the mailer leaves
		// every acknowledged record with NATS, so its duplicates stay at
		// most one per connection; see docs/architecture.md for what a
		// crash of NATS itself or of its host can add.
		sent.PersistMode = jetstream.AsyncPersistMode
	}
	return map[string]jetstream.StreamConfig{
		StreamRegistration: registration,
		StreamRequests:     requests,
		StreamAgenda:       limits(StreamAgenda, "agenda.v1.>", "agenda releases"),
		StreamMail:         mail,
		StreamMailStatus:   status,
		StreamDLQ:          limits(StreamDLQ, "dlq.>", "poison messages with reason"),
		StreamMailSent:     sent,
	}
}
