package bus

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Committer group-commits publishes from many goroutines: a message waits
// while the batch before it is being stored, and whatever arrived meanwhile
// goes out together as one atomic batch, one fsync for all of them. Alone,
// a message is published on its own (an atomic batch of one is slow). So a
// rush is no longer bound by the disk's fsync rate, and a quiet moment pays
// no more than a plain publish.
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
		// The batch outlives any one caller's context: its requests are
		// stored together or not at all.
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		err := c.bus.PublishBatch(ctx, msgs)
		cancel()
		for _, p := range live {
			p.done <- err
		}
	}
}

// publishTimeout bounds one batch's wait for NATS.
const publishTimeout = 5 * time.Second
