package mailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/store"
)

// ledger is the sent ledger: one inserted document per email the SMTP server
// accepted, so that a redelivered job is not sent again (DESIGN §5.3).
//
// Its window bounds the emails sent and not yet recorded — the only ones a
// crash can make the mailer send twice — to MAILER_MAX_UNRECORDED, by
// default one per connection. The records are group-committed: one
// InsertMany for the emails of the window at once, while the connections
// transfer their next messages up to the final ".".
type ledger struct {
	coll   *mongo.Collection
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

type sentRecord struct {
	ID      string    `bson:"_id"`
	EventID string    `bson:"event_id,omitempty"`
	SentAt  time.Time `bson:"sent_at"`
}

func newLedger(db *mongo.Database, window int, giveUp time.Duration, m *metrics, log *slog.Logger) *ledger {
	l := &ledger{
		coll: db.Collection("sent"), log: log, m: m, giveUp: giveUp,
		window: make(chan struct{}, window),
		// Never more entries than window slots: record never blocks.
		queue:    make(chan *entry, window),
		released: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go l.run()
	return l
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
}

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
		if len(group) > 0 && (expired || int64(len(group)) >= l.unrecorded.Load()) {
			return group, true
		}
	}
}

// commit writes the group's records with one unordered InsertMany (a record
// already there is fine), retrying for up to giveUp.
func (l *ledger) commit(group []*entry) {
	docs := make([]any, len(group))
	for i, e := range group {
		docs[i] = sentRecord{ID: e.task.job.ID, EventID: e.task.job.EventID, SentAt: e.sentAt}
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.giveUp)
	defer cancel()
	var err error
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err = l.insert(ctx, docs)
		if deadline, _ := ctx.Deadline(); err == nil || time.Now().Add(wait).After(deadline) {
			break
		}
		l.log.Warn("sent ledger: record failed; retrying", "count", len(docs), "err", err)
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

func (l *ledger) insert(ctx context.Context, docs []any) error {
	_, err := l.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	var bulk mongo.BulkWriteException
	if errors.As(err, &bulk) && bulk.WriteConcernError == nil {
		err = nil
		for _, we := range bulk.WriteErrors {
			if !mongo.IsDuplicateKeyError(we) {
				err = fmt.Errorf("record sent jobs: %s", we.Message)
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("record %d sent jobs: %w", len(docs), store.Translate(err))
	}
	l.m.durableWrites.WithLabelValues(writeLedger).Inc()
	return nil
}

// sentAmong returns which of ids are recorded as sent, with one query.
func (l *ledger) sentAmong(ctx context.Context, ids []string) (map[string]bool, error) {
	found := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return found, nil
	}
	start := time.Now()
	cur, err := l.coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("look up %d sent jobs: %w", len(ids), store.Translate(err))
	}
	var recs []sentRecord
	if err := cur.All(ctx, &recs); err != nil {
		return nil, fmt.Errorf("look up %d sent jobs: %w", len(ids), store.Translate(err))
	}
	l.m.lookupSeconds.Observe(time.Since(start).Seconds())
	for _, r := range recs {
		found[r.ID] = true
	}
	return found, nil
}

// prune deletes the records older than keep, every hour until ctx ends.
// Only a job that can still be redelivered needs its record, and every
// lookup reads the whole collection on FerretDB: keep it that small.
func (l *ledger) prune(ctx context.Context, keep time.Duration) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		res, err := l.coll.DeleteMany(ctx, bson.D{{Key: "sent_at", Value: bson.D{{Key: "$lt", Value: time.Now().Add(-keep)}}}})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.log.Warn("sent ledger: prune failed", "err", err)
		case res.DeletedCount > 0:
			l.log.Info("sent ledger: pruned", "deleted", res.DeletedCount, "older_than", keep.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
