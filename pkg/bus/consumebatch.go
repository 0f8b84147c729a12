package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BatchHandler handles many deliveries at once, so that their records go to
// the database in one write and what they produce to NATS in one atomic
// batch (DESIGN §9). It returns one error per delivery, in order, with the
// meaning of a Handler's: nil acks, Permanent dead-letters, anything else
// retries that delivery alone after a backoff. A nil slice acks them all.
// Each delivery's trace is in its TraceParent (events.WithTrace).
type BatchHandler func(ctx context.Context, ds []Delivery) []error

// ErrBatch fails every delivery of a batch with one error.
func ErrBatch(n int, err error) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

// ConsumeBatch runs handler on batches of up to size messages of the durable
// consumer until ctx ends. It takes what is ready at once; when nothing is,
// it waits for the next message and then for up to linger for more to join
// it. cfg.Workers batches are handled at once. While a batch is handled,
// its messages are kept in progress, so a slow batch is not redelivered to
// another replica.
func (b *Bus) ConsumeBatch(ctx context.Context, cfg ConsumerConfig, size int, linger time.Duration, handler BatchHandler) error {
	cfg.defaults()
	if size < 1 {
		size = 1
	}
	cfg.MaxAckPending = max(cfg.MaxAckPending, size*cfg.Workers)
	cons, stop, err := b.durable(ctx, cfg)
	if err != nil || cons == nil {
		return err
	}
	defer stop()

	work := context.WithoutCancel(ctx)
	sem := make(chan struct{}, cfg.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		// A select with a free worker and an ended ctx picks either at
		// random: without this check a shutdown could pull again and again,
		// up to 1.5 s each (TestConsumeReturnsOnCancel, once in CI).
		if ctx.Err() != nil {
			return nil
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		msgs, err := pullBatch(ctx, cons, size, linger)
		if len(msgs) == 0 {
			<-sem
		} else {
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				b.handleBatch(work, cfg, handler, msgs)
			}()
		}
		if err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			b.log.Warn("consume: fetch", "stream", cfg.Stream, "consumer", cfg.Durable, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// pullBatch takes up to n ready messages; when none is ready it waits up to
// half a second for one, then up to linger for others to join it.
func pullBatch(ctx context.Context, cons jetstream.Consumer, n int, linger time.Duration) ([]jetstream.Msg, error) {
	msgs, err := pull(cons, n)
	if len(msgs) == 0 || len(msgs) >= n || linger <= 0 || err != nil {
		return msgs, err
	}
	timer := time.NewTimer(linger)
	defer timer.Stop()
	for len(msgs) < n {
		select {
		case <-ctx.Done():
			return msgs, nil
		case <-timer.C:
			more, err := fetchReady(cons, n-len(msgs))
			return append(msgs, more...), err
		case <-time.After(linger / 4):
		}
		more, err := fetchReady(cons, n-len(msgs))
		msgs = append(msgs, more...)
		if err != nil {
			return msgs, err
		}
	}
	return msgs, nil
}

func fetchReady(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for msg := range batch.Messages() {
		msgs = append(msgs, msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return msgs, err
	}
	return msgs, nil
}

func (b *Bus) handleBatch(ctx context.Context, cfg ConsumerConfig, handler BatchHandler, msgs []jetstream.Msg) {
	type parsed struct {
		msg jetstream.Msg
		d   Delivery
		log *slog.Logger
		err error
	}
	all := make([]parsed, len(msgs))
	var ds []Delivery
	var idx []int
	for i, msg := range msgs {
		d, _, log, err := b.delivery(ctx, cfg, msg)
		all[i] = parsed{msg: msg, d: d, log: log, err: err}
		if err == nil {
			ds = append(ds, d)
			idx = append(idx, i)
		}
	}
	if len(ds) > 0 {
		stop := keepInProgress(msgs, cfg.AckWait)
		errs := safeHandleBatch(ctx, handler, ds)
		stop()
		switch {
		case errs == nil:
		case len(errs) != len(ds):
			err := fmt.Errorf("bus: batch handler returned %d results for %d deliveries", len(errs), len(ds))
			for _, i := range idx {
				all[i].err = err
			}
		default:
			for j, i := range idx {
				all[i].err = errs[j]
			}
		}
	}
	for _, p := range all {
		b.settle(ctx, cfg, p.log, p.msg, p.d.Attempt, p.err)
	}
}

// keepInProgress tells NATS every third of ackWait that msgs are still being
// worked on, until stop is called.
func keepInProgress(msgs []jetstream.Msg, ackWait time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(ackWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func safeHandleBatch(ctx context.Context, h BatchHandler, ds []Delivery) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			errs = ErrBatch(len(ds), fmt.Errorf("batch handler panic: %v", r))
		}
	}()
	return h(ctx, ds)
}
