package mailer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/bus"
)

// ledger is the sent ledger: a durable record of every email the SMTP
// server accepted, so that a redelivered job is not sent again (DESIGN
// §5.3).
//
// Its window bounds the emails sent and not yet recorded — the only ones a
// crash can make the mailer send twice — to MAILER_MAX_UNRECORDED, by
// default one per connection. The records are group-committed: one write
// for the emails of the window at once, while the connections transfer
// their next messages up to the final ".".
//
// The records are messages on the MAIL_SENT stream, one per group commit,
// not documents in a MongoDB collection as DESIGN §5.3 first had it. With
// the window at one email per connection the mailer sends at most N emails
// per ledger write, so the write's latency caps the drain: FerretDB's
// InsertMany (2–5 ms under load) held the mailer to about a third of bare
// go-mail over the same connections. A JetStream publish is cheaper, and
// on a single server MAIL_SENT is not even fsynced per write (async
// persist mode, events.Streams: a lost record can only duplicate an email;
// docs/architecture.md says when). It is one message per group, not one per
// email found by its subject: JetStream fsyncs every stored message, and an
// atomic batch of a few messages on a single server costs several times one
// publish (nats-server stages it in a file store of its own), which made a
// message per email slower than the InsertMany. Lookups go to sentIndex,
// this process's copy of MAIL_SENT. NATS is what the mailer needs anyway
// (jobs, lease, statuses), so MongoDB is off its path. A record outlives
// its job on MAIL by a day (MaxAge), so nothing prunes the ledger.
//
// Records written before this change are in MongoDB's sent collection;
// legacySent reads them while they can still matter.
type ledger struct {
	bus    *bus.Bus
	index  *sentIndex
	legacy *legacySent // nil when there is no old collection
	log    *slog.Logger
	m      *metrics
	window chan struct{}
	queue  chan *entry
	// released wakes the recorder when a slot was freed without a record.
	released chan struct{}
	done     chan struct{}
	// giveUp bounds how long a record is retried; after it the email counts
	// as sent but unrecorded.
	giveUp time.Duration

	unrecorded atomic.Int64
}

// entry is an email the server accepted, waiting for its record.
type entry struct {
	task   *task
	sentAt time.Time
}

// sentGroup is the body of a message on MAIL_SENT: the emails of one group
// commit.
type sentGroup struct {
	Sent []sentRecord `json:"sent"`
}

type sentRecord struct {
	JobID   string    `json:"job_id"`
	EventID string    `json:"event_id,omitempty"`
	SentAt  time.Time `json:"sent_at"`
}

// sentSubject is the subject of the records on MAIL_SENT
// (events.StreamMailSent).
const sentSubject = "mail-sent.v1.sent"

// newLedger opens the sent ledger on MAIL_SENT, which must exist, with the
// old MongoDB collection as a fallback if db still holds one.
func newLedger(ctx context.Context, b *bus.Bus, db *mongo.Database, window int, giveUp time.Duration, m *metrics, log *slog.Logger) (*ledger, error) {
	legacy, err := openLegacySent(ctx, db, log)
	if err != nil {
		return nil, err
	}
	index, err := openSentIndex(ctx, b.JS, m, log)
	if err != nil {
		return nil, err
	}
	l := &ledger{
		bus: b, index: index, legacy: legacy, log: log, m: m, giveUp: giveUp,
		window: make(chan struct{}, window),
		// Never more entries than window slots: record never blocks.
		queue:    make(chan *entry, window),
		released: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go l.run()
	return l, nil
}

// acquire takes a slot in the window, for an email about to be committed.
func (l *ledger) acquire(ctx context.Context) error {
	select {
	case l.window <- struct{}{}:
		l.m.unrecorded.Set(float64(l.unrecorded.Add(1)))
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release frees a slot: the email was not sent after all.
func (l *ledger) release() {
	l.free()
	select {
	case l.released <- struct{}{}:
	default:
	}
}

func (l *ledger) free() {
	<-l.window
	l.m.unrecorded.Set(float64(l.unrecorded.Add(-1)))
}

// record hands over an accepted email, holding a window slot; the ledger
// releases the slot and answers the task once the record is written.
func (l *ledger) record(e *entry) { l.queue <- e }

// close waits for the records handed over so far. Call it once nothing
// more is recorded.
func (l *ledger) close() {
	close(l.queue)
	<-l.done
	l.index.close()
}

// maxGroup caps the records of one message (about 150 bytes each) well
// under NATS's 1 MB payload limit, whatever MAILER_MAX_UNRECORDED is.
const maxGroup = 1000

// groupLinger is the longest the first email of a group waits for the
// others in the window to join it.
const groupLinger = 2 * time.Millisecond

func (l *ledger) run() {
	defer close(l.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		group, open := l.next(timer)
		if len(group) > 0 {
			l.commit(group)
		}
		if !open {
			return
		}
	}
}

// next gathers the next group to write: every email in the window once all
// are accepted (the connections then all wait at their next "." and one
// write lets them all go on), or what has come within groupLinger of the
// first. It reports false once the queue is closed.
func (l *ledger) next(timer *time.Timer) (group []*entry, open bool) {
	defer timer.Stop()
	for {
		var expired bool
		select {
		case e, ok := <-l.queue:
			if !ok {
				return group, false
			}
			if len(group) == 0 {
				timer.Reset(groupLinger)
			}
			group = append(group, e)
		case <-l.released:
		case <-timer.C:
			expired = true
		}
		if len(group) > 0 && (expired || int64(len(group)) >= l.unrecorded.Load() || len(group) >= maxGroup) {
			return group, true
		}
	}
}

// recordTimeout bounds one attempt at writing a group, so that a reply lost
// with a dropped connection is retried rather than waited for.
const recordTimeout = 2 * time.Second

// commit writes the group's records as one message, retrying for up to
// giveUp. Its Nats-Msg-Id makes a retry of a write that was stored after
// all (its reply lost) a no-op.
func (l *ledger) commit(group []*entry) {
	msg := groupMsg(group)
	ctx, cancel := context.WithTimeout(context.Background(), l.giveUp)
	defer cancel()
	var err error
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err = l.publish(ctx, msg)
		if deadline, _ := ctx.Deadline(); err == nil || time.Now().Add(wait).After(deadline) {
			break
		}
		l.log.Warn("sent ledger: record failed; retrying", "count", len(group), "err", err)
		time.Sleep(wait)
	}
	now := time.Now()
	for _, e := range group {
		l.free()
		o := outcome{index: e.task.index, sent: true, sentAt: e.sentAt, recordErr: err}
		if err == nil {
			l.m.recordWindow.Observe(now.Sub(e.sentAt).Seconds())
		} else {
			l.m.unrecordedTotal.Inc()
			l.log.Error("email sent but not recorded; a redelivery would send it again", "job_id", e.task.job.ID, "err", err)
		}
		e.task.done <- o
	}
}

// groupMsg is the MAIL_SENT message recording group.
func groupMsg(group []*entry) *nats.Msg {
	var body sentGroup
	id := sha256.New()
	for _, e := range group {
		job := e.task.job
		body.Sent = append(body.Sent, sentRecord{JobID: job.ID, EventID: job.EventID, SentAt: e.sentAt.UTC()})
		id.Write([]byte(job.ID))
		id.Write([]byte{0})
	}
	// Marshalling strings and times cannot fail.
	data, _ := json.Marshal(body)
	msg := &nats.Msg{Subject: sentSubject, Data: data, Header: nats.Header{}}
	// The same jobs make the same id: a repeat records nothing new.
	msg.Header.Set(jetstream.MsgIDHeader, hex.EncodeToString(id.Sum(nil)))
	return msg
}

func (l *ledger) publish(ctx context.Context, msg *nats.Msg) error {
	if !l.bus.NC.IsConnected() {
		return fmt.Errorf("record sent jobs: %w", bus.ErrDisconnected)
	}
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	if _, err := l.bus.JS.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("record sent jobs: %w", err)
	}
	l.m.durableWrites.WithLabelValues(writeLedger).Inc()
	return nil
}

// sentAmong returns which of ids are recorded as sent: in MAIL_SENT, once
// this process has read it up to its last record, and, for the ids not
// there, in the old collection while it exists.
func (l *ledger) sentAmong(ctx context.Context, ids []string) (map[string]bool, error) {
	if len(ids) == 0 {
		return map[string]bool{}, nil
	}
	start := time.Now()
	found, err := l.index.sentAmong(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("look up %d sent jobs: %w", len(ids), err)
	}
	if l.legacy != nil && len(found) < len(ids) {
		var missing []string
		for _, id := range ids {
			if !found[id] {
				missing = append(missing, id)
			}
		}
		old, err := l.legacy.sentAmong(ctx, missing)
		if err != nil {
			return nil, err
		}
		for id := range old {
			found[id] = true
		}
	}
	l.m.lookupSeconds.Observe(time.Since(start).Seconds())
	return found, nil
}
