package mailer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	netmail "net/mail"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wneessen/go-mail"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
)

type mailer struct {
	bus  *bus.Bus
	pool *pool
	sent *sentLog
	from string
	log  *slog.Logger

	outcomes     *prometheus.CounterVec
	sendSeconds  prometheus.Histogram
	recordWindow prometheus.Histogram
}

func newMailer(deps *service.Deps, p *pool, from string, log *slog.Logger) *mailer {
	m := &mailer{
		bus:  deps.Bus,
		pool: p,
		sent: &sentLog{coll: deps.DB.Collection("sent")},
		from: from,
		log:  log,
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailer_jobs_total", Help: "Mail jobs by outcome (sent, deferred, failed, skipped_duplicate).",
		}, []string{"outcome"}),
		sendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mailer_smtp_send_seconds", Help: "Time to hand one email to the SMTP server.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		recordWindow: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailer_record_window_seconds",
			Help:    "Time between the SMTP 250 and the sent record: the only window in which a crash can duplicate an email.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	deps.Metrics.MustRegister(m.outcomes, m.sendSeconds, m.recordWindow)
	return m
}

// handle sends one mail job. Redelivered jobs already recorded as sent are
// acked without sending again.
func (m *mailer) handle(ctx context.Context, d bus.Delivery) error {
	var job events.MailJob
	if err := d.Envelope.Decode(&job); err != nil {
		return bus.Permanent(err)
	}
	if job.ID == "" || job.To == "" {
		return bus.Permanent(errors.New("mail job without id or recipient"))
	}
	log := bus.Log(ctx, m.log).With("job_id", job.ID, "attempt", d.Attempt)

	if d.Attempt > 1 {
		done, err := m.sent.has(ctx, job.ID)
		if err != nil {
			return err
		}
		if done {
			m.outcomes.WithLabelValues("skipped_duplicate").Inc()
			log.Info("job already sent; not sending again")
			return m.status(ctx, job, events.MailSent, d.Attempt, "")
		}
	}

	msg, err := m.compose(job)
	if err != nil {
		detail := redact(err.Error())
		m.outcomes.WithLabelValues(events.MailFailed).Inc()
		_ = m.status(ctx, job, events.MailFailed, d.Attempt, detail)
		return bus.Permanent(errors.New(detail))
	}

	start := time.Now()
	err = m.pool.send(ctx, msg)
	m.sendSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return m.failed(ctx, log, job, d, err)
	}

	accepted := time.Now()
	if err := m.sent.record(ctx, job, accepted); err != nil {
		// The email went out; if this record is lost a redelivery would send
		// it again. Keep retrying the record, never the send.
		log.Error("email sent but not recorded", "err", err)
		if err := m.sent.record(ctx, job, accepted); err != nil {
			log.Error("email sent but not recorded; a redelivery may duplicate it", "err", err)
		}
	}
	m.recordWindow.Observe(time.Since(accepted).Seconds())
	m.outcomes.WithLabelValues(events.MailSent).Inc()
	log.Info("email sent", "kind", job.Kind)
	return m.status(ctx, job, events.MailSent, d.Attempt, "")
}

func (m *mailer) failed(ctx context.Context, log *slog.Logger, job events.MailJob, d bus.Delivery, err error) error {
	// SMTP replies and go-mail's errors quote the recipient; logs, statuses
	// and dead letters get the error without addresses.
	detail := redact(err.Error())
	if permanentSMTP(err) || d.LastAttempt {
		m.outcomes.WithLabelValues(events.MailFailed).Inc()
		log.Warn("email failed", "err", detail)
		if serr := m.status(ctx, job, events.MailFailed, d.Attempt, detail); serr != nil {
			return serr
		}
		return bus.Permanent(errors.New(detail))
	}
	m.outcomes.WithLabelValues(events.MailDeferred).Inc()
	log.Warn("email deferred", "err", detail)
	_ = m.status(ctx, job, events.MailDeferred, d.Attempt, detail)
	return errors.New(detail)
}

var addressRE = regexp.MustCompile(`[^\s<>"'(),;:\[\]]+@[^\s<>"'(),;:\[\]]+`)

// redact replaces email addresses in s.
func redact(s string) string {
	return addressRE.ReplaceAllString(s, "<address>")
}

func (m *mailer) compose(job events.MailJob) (*mail.Msg, error) {
	msg := mail.NewMsg()
	if err := msg.From(m.from); err != nil {
		return nil, fmt.Errorf("SMTP_FROM: %w", err)
	}
	// net/mail quotes and encodes the display name, whatever it holds (a
	// quote, a backslash, non-ASCII): a name must never cost an email.
	to, err := netmail.ParseAddress(job.To)
	if err != nil || to.Address != job.To {
		return nil, errors.New("recipient: not a plain email address")
	}
	to.Name = job.ToName
	msg.ToMailAddress(to)
	msg.Subject(job.Subject)
	// A stable Message-ID lets receiving systems drop a duplicate too.
	msg.SetMessageIDWithValue(job.ID + "@plenary")
	msg.SetBodyString(mail.TypeTextPlain, job.Text)
	if job.HTML != "" {
		msg.AddAlternativeString(mail.TypeTextHTML, job.HTML)
	}
	for _, a := range job.Attachments {
		if err := msg.AttachReader(a.Name, bytes.NewReader(a.Data), mail.WithFileContentType(mail.ContentType(a.ContentType))); err != nil {
			return nil, fmt.Errorf("attachment %s: %w", a.Name, err)
		}
	}
	return msg, nil
}

// status publishes a job's status. The msg id makes a repeat of the same
// status for the same attempt a no-op.
func (m *mailer) status(ctx context.Context, job events.MailJob, status string, attempt int, detail string) error {
	id := job.ID + ":" + status
	if status == events.MailDeferred {
		id = fmt.Sprintf("%s:%d", id, attempt)
	}
	env, err := events.NewWithID(id, "plenary/mailer", "mail.v1.status."+status, job.ID, events.MailStatus{
		JobID: job.ID, EventID: job.EventID, Status: status, Attempt: attempt, Detail: detail, At: time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	return m.bus.PublishEvent(ctx, env.Traced(ctx))
}
