package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/store"
)

// Email kinds, as recorded in the email log and carried by mail jobs.
const (
	kindConfirmation = "confirmation"
	kindWaitlisted   = "waitlisted"
	kindPending      = "pending"
	kindRejected     = "rejected"
	kindDuplicate    = "duplicate"
	kindPromoted     = "promoted"
	kindCancelled    = "cancelled"
	kindSwitched     = "switched"
	kindLinks        = "links"
)

// emailKind maps a registration event (its type, and the reason of an
// update) to the email it triggers.
func emailKind(typ, reason string) (string, bool) {
	switch typ {
	case events.RegistrationPromoted:
		return kindPromoted, true
	case events.RegistrationCancelled:
		return kindCancelled, true
	case events.RegistrationLinkRequested:
		return kindLinks, true
	case events.RegistrationUpdated:
		switch reason {
		case "mode_switched":
			return kindSwitched, true
		case "links_rotated":
			return kindLinks, true
		}
		return "", false
	case events.RegistrationConfirmed:
		return kindConfirmation, true
	case events.RegistrationWaitlisted:
		return kindWaitlisted, true
	case events.RegistrationPending:
		return kindPending, true
	case events.RegistrationRejected:
		return kindRejected, true
	case events.RegistrationDuplicateAttempt:
		return kindDuplicate, true
	}
	return "", false
}

// duplicateWindow bounds "already registered" emails: at most one per
// registration (that is, per address and event) in each window, however
// often someone submits the form with that address (DESIGN §6).
const duplicateWindow = 10 * time.Minute

// dedupeKey names the email a message asks for, so that every delivery and
// replay of it names the same email. A registration gets one email per kind
// and version; duplicate attempts get one per registration and
// duplicateWindow, keyed by the window the attempt's message was made in.
func dedupeKey(kind string, reg events.Registration, env events.Envelope) string {
	if kind == kindDuplicate {
		return fmt.Sprintf("duplicate:%s:%d", reg.ID, env.Time.Truncate(duplicateWindow).Unix())
	}
	if kind == kindLinks {
		// Each request for the links is its own email; the registration
		// service limits how often one may ask.
		return fmt.Sprintf("links:%s:%s", reg.ID, env.ID)
	}
	return fmt.Sprintf("%s:%s:%d", kind, reg.ID, reg.Version)
}

// jobID turns a dedupe key into the mail job id, which becomes the local part
// of the email's Message-ID, where ':' is not allowed.
func jobID(key string) string {
	return strings.ReplaceAll(key, ":", ".")
}

// notifier turns registration events into mail jobs.
type notifier struct {
	bus    *bus.Bus
	emails *emailStore
	tmpl   *templates
	log    *slog.Logger
	jobs   *prometheus.CounterVec
}

func newNotifier(deps *service.Deps, emails *emailStore, tmpl *templates, log *slog.Logger) *notifier {
	n := &notifier{
		bus: deps.Bus, emails: emails, tmpl: tmpl, log: log,
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notification_mail_jobs_total",
			Help: "Mail jobs by kind and outcome (queued, republished, already_handled).",
		}, []string{"kind", "outcome"}),
	}
	deps.Metrics.MustRegister(n.jobs)
	return n
}

// handleRegistration renders and queues the email a registration event calls
// for. Inserting the email record is the claim: a duplicate key means the
// message was handled before, perhaps up to a crash before the publish, so
// the stored job is published again and NATS drops the repeat by its id.
func (n *notifier) handleRegistration(ctx context.Context, d bus.Delivery) error {
	var reg events.Registration
	decodeErr := d.Envelope.Decode(&reg)
	kind, ok := emailKind(d.Envelope.Type, reg.Reason)
	if !ok {
		return nil // no email for this one (or a type unknown to us)
	}
	if decodeErr != nil {
		return bus.Permanent(decodeErr)
	}
	if err := checkRegistration(reg); err != nil {
		return bus.Permanent(fmt.Errorf("%s %s: %w", d.Envelope.Type, d.Envelope.ID, err))
	}
	id := jobID(dedupeKey(kind, reg, d.Envelope))
	log := bus.Log(ctx, n.log).With("job_id", id, "registration_id", reg.ID, "event_id", reg.EventID, "kind", kind)

	msg, err := n.tmpl.render(kind, reg, d.Envelope.Time)
	if err != nil {
		return bus.Permanent(fmt.Errorf("render %s for registration[%s]: %w", kind, reg.ID, err))
	}
	rec := emailRecord{
		ID: id, EventID: reg.EventID, RegistrationID: reg.ID, Kind: kind,
		To: strings.TrimSpace(reg.Email), ToName: msg.toName, Subject: msg.subject,
		Text: msg.text, HTML: msg.html, Attachments: msg.attachments,
		CreatedAt: time.Now().UTC(),
	}
	err = n.emails.claim(ctx, rec)
	switch {
	case err == nil:
		if err := n.publish(ctx, rec); err != nil {
			return err
		}
		n.jobs.WithLabelValues(kind, "queued").Inc()
		log.Info("email queued")
		return nil
	case errors.Is(err, store.ErrDuplicate):
		return n.replay(ctx, log, id)
	default:
		return err
	}
}

// replay publishes a claimed email's job again. Within the stream's duplicate
// window NATS drops the repeat. Past it, a repeat would be a new job, so it
// is published only if the mailer never reported on the job: then the first
// publish was lost (or the job still waits in the queue, the rare case in
// which this sends a duplicate).
func (n *notifier) replay(ctx context.Context, log *slog.Logger, id string) error {
	rec, err := n.emails.get(ctx, id)
	if err != nil {
		return err
	}
	if time.Since(rec.CreatedAt) > events.DuplicateWindow-time.Minute {
		reported, err := n.emails.statusesOf(ctx, id)
		if err != nil {
			return err
		}
		if len(reported[id]) > 0 {
			n.jobs.WithLabelValues(rec.Kind, "already_handled").Inc()
			log.Info("email already handled; not queued again")
			return nil
		}
	}
	if err := n.publish(ctx, rec); err != nil {
		return err
	}
	n.jobs.WithLabelValues(rec.Kind, "republished").Inc()
	log.Info("email claimed before; job published again")
	return nil
}

// publish puts the record's job on the MAIL work queue with the job id as
// Nats-Msg-Id.
func (n *notifier) publish(ctx context.Context, rec emailRecord) error {
	env, err := events.NewWithID(rec.ID, "plenary/notification", events.MailSend, rec.RegistrationID, rec.job())
	if err != nil {
		return bus.Permanent(err)
	}
	return n.bus.PublishEvent(ctx, env.Traced(ctx))
}

// checkRegistration rejects payloads no email can be made from.
func checkRegistration(reg events.Registration) error {
	if reg.ID == "" {
		return errors.New("registration without id")
	}
	addr := strings.TrimSpace(reg.Email)
	if addr == "" || strings.ContainsAny(addr, "\r\n") {
		return fmt.Errorf("registration[%s]: no usable email address", reg.ID)
	}
	if _, err := mail.ParseAddress(addr); err != nil {
		return fmt.Errorf("registration[%s]: invalid email address", reg.ID)
	}
	return nil
}

// handleStatus records a mailer status report. Reports are only inserted,
// never merged into the email record: the latest is chosen when read.
func (n *notifier) handleStatus(ctx context.Context, d bus.Delivery) error {
	var st events.MailStatus
	if err := d.Envelope.Decode(&st); err != nil {
		return bus.Permanent(err)
	}
	if st.JobID == "" {
		return bus.Permanent(fmt.Errorf("%s %s: status without job id", d.Envelope.Type, d.Envelope.ID))
	}
	if st.Status == "" {
		st.Status = strings.TrimPrefix(d.Subject, "mail.v1.status.")
	}
	if st.At.IsZero() {
		st.At = d.Envelope.Time
	}
	return n.emails.addStatus(ctx, statusRecord{
		ID: d.Envelope.ID, JobID: st.JobID, EventID: st.EventID, Status: st.Status,
		Attempt: st.Attempt, Detail: st.Detail, At: st.At.UTC(),
	})
}
