package mailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
)

type mailer struct {
	bus    *bus.Bus
	pool   *pool
	ledger *ledger
	log    *slog.Logger
	m      *metrics
}

// handleBatch sends a batch of mail jobs: the redelivered ones looked up in
// the sent ledger, the others sent over the pool's connections (each
// recorded in the ledger as it goes out), then every status in one atomic
// publish. The deliveries are settled by ConsumeBatch from the errors
// returned: nil acks, bus.Permanent dead-letters, anything else retries.
func (m *mailer) handleBatch(ctx context.Context, ds []bus.Delivery) []error {
	m.m.batchSize.Observe(float64(len(ds)))
	errs := make([]error, len(ds))
	jobs := make([]events.MailJob, len(ds))
	var redelivered []string
	for i, d := range ds {
		if err := d.Envelope.Decode(&jobs[i]); err != nil {
			errs[i] = bus.Permanent(err)
			continue
		}
		if jobs[i].ID == "" || jobs[i].To == "" {
			errs[i] = bus.Permanent(errors.New("mail job without id or recipient"))
			continue
		}
		if again(d) {
			redelivered = append(redelivered, jobs[i].ID)
		}
	}
	recorded, lookupErr := m.ledger.sentAmong(ctx, redelivered)

	results := make(chan outcome, len(ds))
	held := m.lease()
	var replays []int
	var tasks []*task
	for i, d := range ds {
		switch {
		case errs[i] != nil:
		case again(d) && lookupErr != nil:
			errs[i] = lookupErr
		case again(d) && recorded[jobs[i].ID]:
			// Sent before, and the ack or the status did not make it.
			m.m.outcomes.WithLabelValues("skipped_duplicate").Inc()
			replays = append(replays, i)
		default:
			tasks = append(tasks, &task{index: i, job: jobs[i], held: held, done: results})
		}
	}
	m.pool.submit(tasks)

	statuses := make([]pendingStatus, 0, len(tasks))
	for range tasks {
		o := <-results
		st, err := m.result(ctx, ds[o.index], jobs[o.index], o)
		statuses = append(statuses, st)
		errs[o.index] = err
	}
	replayed := make([]pendingStatus, len(replays))
	for k, i := range replays {
		replayed[k] = pendingStatus{index: i, job: jobs[i], status: events.MailSent, attempt: ds[i].Attempt}
	}
	// Replayed statuses go on their own: their ids are likely in NATS's
	// duplicate window, and one such id makes the server refuse a whole
	// atomic batch (which PublishBatch then sends one by one).
	m.publishStatuses(ctx, ds, statuses, errs)
	m.publishStatuses(ctx, ds, replayed, errs)

	m.countSettles(ds, errs)
	if lookupErr != nil {
		m.log.Warn("sent ledger lookup failed; redelivered jobs retried later", "count", len(redelivered), "err", lookupErr)
	}
	return errs
}

// result turns a send's outcome into the job's status and the delivery's
// error.
func (m *mailer) result(ctx context.Context, d bus.Delivery, job events.MailJob, o outcome) (pendingStatus, error) {
	st := pendingStatus{index: o.index, job: job, attempt: d.Attempt}
	log := bus.Log(events.WithTrace(ctx, d.TraceParent), m.log).With("job_id", job.ID, "attempt", d.Attempt)
	if o.sent {
		m.m.outcomes.WithLabelValues(events.MailSent).Inc()
		log.Debug("email sent", "kind", job.Kind)
		st.status = events.MailSent
		return st, nil
	}
	// SMTP replies and go-mail's errors quote the recipient; logs, statuses
	// and dead letters get the error without addresses.
	st.detail = redact(o.err.Error())
	if bus.IsPermanent(o.err) || permanentSMTP(o.err) || d.LastAttempt {
		m.m.outcomes.WithLabelValues(events.MailFailed).Inc()
		log.Warn("email failed", "err", st.detail)
		st.status = events.MailFailed
		return st, bus.Permanent(errors.New(st.detail))
	}
	m.m.outcomes.WithLabelValues(events.MailDeferred).Inc()
	log.Warn("email deferred", "err", st.detail)
	st.status = events.MailDeferred
	return st, errors.New(st.detail)
}

// pendingStatus is a status to publish for the job of delivery index.
type pendingStatus struct {
	index   int
	job     events.MailJob
	status  string
	attempt int
	detail  string
}

// publishStatuses publishes sts with one PublishBatch. If that fails, the
// jobs whose status is missing are retried rather than settled: a sent one
// is then found in the ledger and only its status published again.
func (m *mailer) publishStatuses(ctx context.Context, ds []bus.Delivery, sts []pendingStatus, errs []error) {
	if len(sts) == 0 {
		return
	}
	msgs := make([]*nats.Msg, 0, len(sts))
	for _, st := range sts {
		msg, err := statusMsg(events.WithTrace(ctx, ds[st.index].TraceParent), st)
		if err != nil {
			errs[st.index] = err
			continue
		}
		msgs = append(msgs, msg)
	}
	if err := m.bus.PublishBatch(ctx, msgs); err != nil {
		m.log.Error("publish mail statuses", "count", len(msgs), "err", err)
		for _, st := range sts {
			if errs[st.index] == nil || bus.IsPermanent(errs[st.index]) {
				errs[st.index] = fmt.Errorf("publish status: %w", err)
			}
		}
		return
	}
	stores := len(msgs) // fewer than bus.MinAtomicBatch go one by one
	if len(msgs) >= bus.MinAtomicBatch {
		stores = (len(msgs) + bus.MaxAtomicBatch - 1) / bus.MaxAtomicBatch
	}
	m.m.durableWrites.WithLabelValues(writeStatus).Add(float64(stores))
}

// statusMsg is a job's status event. Its id makes a repeat of the same
// status for the same attempt a no-op.
func statusMsg(ctx context.Context, st pendingStatus) (*nats.Msg, error) {
	id := st.job.ID + ":" + st.status
	if st.status == events.MailDeferred {
		id = fmt.Sprintf("%s:%d", id, st.attempt)
	}
	env, err := events.NewWithID(id, "plenary/mailer", "mail.v1.status."+st.status, st.job.ID, events.MailStatus{
		JobID: st.job.ID, EventID: st.job.EventID, Status: st.status, Attempt: st.attempt, Detail: st.detail, At: time.Now().UTC(),
	})
	if err != nil {
		return nil, err
	}
	return bus.EnvelopeMsg(env.Traced(ctx))
}

// countSettles counts the acks, naks and dead letters ConsumeBatch is about
// to write for errs.
func (m *mailer) countSettles(ds []bus.Delivery, errs []error) {
	for i, err := range errs {
		switch {
		case err == nil:
			m.m.durableWrites.WithLabelValues(writeAck).Inc()
		case bus.IsPermanent(err) || ds[i].LastAttempt:
			m.m.durableWrites.WithLabelValues(writeDeadLetter).Inc()
			m.m.durableWrites.WithLabelValues(writeTerm).Inc()
		default:
			m.m.durableWrites.WithLabelValues(writeNak).Inc()
		}
	}
}

// lease returns a check that this process still holds the messages of the
// batch it is handling: connected to NATS, with no reconnect since. While
// connected, ConsumeBatch's in-progress signals reach NATS every third of
// AckWait, so NATS gives the messages to no other worker. Once the
// connection dropped they may have stopped arriving, and a worker withdraws
// its message rather than risk a second worker sending it too. An email
// already past the check finishes within SMTP_TIMEOUT, well inside the two
// thirds of AckWait (2×SMTP_TIMEOUT) that NATS waits at least after the last
// signal.
func (m *mailer) lease() func() bool {
	nc := m.bus.NC
	reconnects := nc.Stats().Reconnects
	return func() bool { return nc.IsConnected() && nc.Stats().Reconnects == reconnects }
}

// headerRepublished marks a job notification published again past NATS's
// duplicate window (a new message, delivered the first time).
const headerRepublished = "Plenary-Republished"

// again reports whether a job may have been sent before: redelivered, or
// republished by notification. Those are looked up in the sent ledger.
func again(d bus.Delivery) bool {
	return d.Attempt > 1 || d.Header.Get(headerRepublished) != ""
}
