package mailer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/events"
)

// sentIndex is this process's copy of the sent ledger: the ids of the jobs
// recorded on MAIL_SENT, read by an ordered consumer from the stream's
// start and then as records arrive, from any replica. A lookup first waits
// until the copy holds the stream's last record, so it answers for every
// record stored before it began.
//
// It costs memory for every job id sent within MAIL_SENT's MaxAge (8
// days), and at start one read of the stream.
type sentIndex struct {
	stream jetstream.Stream
	cc     jetstream.ConsumeContext
	maxAge time.Duration
	log    *slog.Logger
	m      *metrics
	stop   chan struct{}
	pruned chan struct{}

	mu   sync.Mutex
	sent map[string]time.Time // job id → when its record was stored
	read uint64               // stream sequence of the last record read
	// moved is closed, and replaced, whenever read moves.
	moved chan struct{}
}

// catchUpWait bounds how long a lookup waits for the index to read the
// stream's last record; the batch's redelivered jobs are retried after it.
const catchUpWait = 10 * time.Second

// openSentIndex starts reading MAIL_SENT, which must exist.
func openSentIndex(ctx context.Context, js jetstream.JetStream, m *metrics, log *slog.Logger) (*sentIndex, error) {
	stream, err := js.Stream(ctx, events.StreamMailSent)
	if err != nil {
		return nil, fmt.Errorf("mailer: sent ledger: stream %s: %w", events.StreamMailSent, err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("mailer: sent ledger: read %s: %w", events.StreamMailSent, err)
	}
	x := &sentIndex{
		stream: stream, maxAge: stream.CachedInfo().Config.MaxAge, log: log, m: m,
		stop: make(chan struct{}), pruned: make(chan struct{}),
		sent: map[string]time.Time{}, moved: make(chan struct{}),
	}
	x.cc, err = cons.Consume(x.apply, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Warn("sent ledger: reading MAIL_SENT", "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("mailer: sent ledger: read %s: %w", events.StreamMailSent, err)
	}
	go x.prune()
	return x, nil
}

// apply adds the records of one MAIL_SENT message.
func (x *sentIndex) apply(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		x.log.Error("sent ledger: record without metadata", "err", err)
		return
	}
	var group sentGroup
	if err := json.Unmarshal(msg.Data(), &group); err != nil {
		// Only the mailer writes MAIL_SENT; nothing to recover.
		x.log.Error("sent ledger: unreadable record", "seq", meta.Sequence.Stream, "err", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range group.Sent {
		x.sent[r.JobID] = meta.Timestamp
	}
	x.read = meta.Sequence.Stream
	close(x.moved)
	x.moved = make(chan struct{})
	x.m.indexRecords.Set(float64(len(x.sent)))
}

// sentAmong returns which of ids are recorded, once the index holds every
// record stored before the call.
func (x *sentIndex) sentAmong(ctx context.Context, ids []string) (map[string]bool, error) {
	if err := x.catchUp(ctx); err != nil {
		return nil, err
	}
	found := make(map[string]bool, len(ids))
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range ids {
		if _, ok := x.sent[id]; ok {
			found[id] = true
		}
	}
	return found, nil
}

// catchUp waits until the index has read the stream's last record.
func (x *sentIndex) catchUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	info, err := x.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", events.StreamMailSent, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	// Records only leave the stream oldest first (MaxAge): the last one is
	// there for the consumer to read.
	last := info.State.LastSeq
	for {
		x.mu.Lock()
		read, moved := x.read, x.moved
		x.mu.Unlock()
		if read >= last {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("%s: read up to record %d of %d: %w", events.StreamMailSent, read, last, ctx.Err())
		}
	}
}

// prune forgets, every hour, the records MAIL_SENT has dropped by now.
func (x *sentIndex) prune() {
	defer close(x.pruned)
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		select {
		case <-x.stop:
			return
		case <-tick.C:
		}
		if x.maxAge <= 0 {
			continue
		}
		cutoff := time.Now().Add(-x.maxAge)
		x.mu.Lock()
		for id, at := range x.sent {
			if at.Before(cutoff) {
				delete(x.sent, id)
			}
		}
		x.m.indexRecords.Set(float64(len(x.sent)))
		x.mu.Unlock()
	}
}

// close stops reading.
func (x *sentIndex) close() {
	x.cc.Stop()
	close(x.stop)
	<-x.pruned
}
