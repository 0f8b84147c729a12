package bus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Committer group-commits publishes from many goroutines: a message waits
// while the batch before it is being stored, and whatever arrived meanwhile
// goes out together (PublishBatch: one atomic batch, one fsync for all of
// them, or pipelined publishes when fewer than MinAtomicBatch arrived). So
// a rush is no longer bound by the disk's fsync rate, and a quiet moment
// pays no more than a plain publish.
//
// Only messages whose ids cannot already be in the duplicate window belong
// here (fresh ids): one known id makes the server refuse the whole batch,
// which PublishBatch then resends message by message.
type Committer struct {
	bus     *Bus
	queue   chan *pending
	workers int
	wg      sync.WaitGroup
}

type pending struct {
	msg  *nats.Msg
	ctx  context.Context
	done chan error
}

// NewCommitter starts workers goroutines that each store one batch at a
// time; a few let a batch fill while another is in flight. Stop it with
// Close.
func NewCommitter(b *Bus, workers int) *Committer {
	c := &Committer{bus: b, queue: make(chan *pending, 4096), workers: max(workers, 1)}
	for range c.workers {
		c.wg.Add(1)
		go c.run()
	}
	return c
}

// Publish stores msg (its Nats-Msg-Id header set) and returns once NATS has
// acknowledged it, or with the error of its batch.
func (c *Committer) Publish(ctx context.Context, msg *nats.Msg) error {
	p := &pending{msg: msg, ctx: ctx, done: make(chan error, 1)}
	select {
	case c.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The message may still be stored; the caller answers an error and
		// a retry with the same Idempotency-Key is deduplicated.
		return ctx.Err()
	}
}

// Close stops the workers once the queue is empty.
func (c *Committer) Close() {
	close(c.queue)
	c.wg.Wait()
}

func (c *Committer) run() {
	defer c.wg.Done()
	for first := range c.queue {
		batch := []*pending{first}
	fill:
		for len(batch) < MaxAtomicBatch {
			select {
			case p, ok := <-c.queue:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		live := batch[:0]
		msgs := make([]*nats.Msg, 0, len(batch))
		for _, p := range batch {
			if p.ctx.Err() != nil {
				p.done <- p.ctx.Err() // its caller gave up: not stored
				continue
			}
			live = append(live, p)
			msgs = append(msgs, p.msg)
		}
		if len(msgs) == 0 {
			continue
		}
		// The batch outlives any one caller's context.
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		if len(msgs) < MinAtomicBatch {
			for i, err := range c.bus.publishEach(ctx, msgs) {
				live[i].done <- err
			}
		} else {
			err := c.bus.PublishBatch(ctx, msgs)
			for _, p := range live {
				p.done <- err
			}
		}
		cancel()
	}
}

// publishEach publishes msgs asynchronously, in order, each deduplicated by
// its Nats-Msg-Id, and returns each one's outcome once all are answered
// (nil for each when all were stored), waiting at most publishTimeout when
// ctx has no deadline. Unlike an atomic batch it can store some and not
// others, and a message lost with a dropped connection can be stored by
// the caller's retry after one sent behind it: callers retry what failed,
// and consumers order by version, not by arrival.
func (b *Bus) publishEach(ctx context.Context, msgs []*nats.Msg) []error {
	errs := make([]error, len(msgs))
	if !b.NC.IsConnected() {
		for i := range errs {
			errs[i] = ErrDisconnected
		}
		return errs
	}
	if _, ok := ctx.Deadline(); !ok {
		// An ack that never comes (the connection lost in between) must
		// not hold the caller for ever: the publish is then retried.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, publishTimeout)
		defer cancel()
	}
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		clearBatchHeaders(m) // left by an atomic attempt the caller retries
		futures[i], errs[i] = b.JS.PublishMsgAsync(m)
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("bus: publish %s: %w", msgs[i].Subject, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("bus: publish %s: %w", msgs[i].Subject, ctx.Err())
		}
	}
	return errs
}

// publishTimeout bounds one batch's wait for NATS.
const publishTimeout = 5 * time.Second
