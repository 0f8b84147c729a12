package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
)

// batchRecorder records the batches it is handed and answers each delivery
// with reply.
type batchRecorder struct {
	mu      sync.Mutex
	batches [][]bus.Delivery
	reply   func(d bus.Delivery) error
	slow    time.Duration
}

func (r *batchRecorder) handle(_ context.Context, ds []bus.Delivery) []error {
	r.mu.Lock()
	r.batches = append(r.batches, ds)
	r.mu.Unlock()
	time.Sleep(r.slow) // a batch that outlives the ack wait
	errs := make([]error, len(ds))
	for i, d := range ds {
		errs[i] = r.reply(d)
	}
	return errs
}

func (r *batchRecorder) seen() (batches, deliveries int, biggest int, subjects map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	subjects = map[string]int{}
	for _, b := range r.batches {
		biggest = max(biggest, len(b))
		deliveries += len(b)
		for _, d := range b {
			subjects[d.Envelope.Subject]++
		}
	}
	return len(r.batches), deliveries, biggest, subjects
}

func TestConsumeBatch(t *testing.T) {
	b, _ := newBus(t)
	const n = 250
	for i := range n {
		env, err := events.New("test", events.RegistrationConfirmed, fmt.Sprint("r", i), events.Registration{ID: fmt.Sprint("r", i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.PublishEvent(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
	rec := &batchRecorder{reply: func(d bus.Delivery) error {
		switch d.Envelope.Subject {
		case "r5":
			return bus.Permanent(errors.New("poison"))
		case "r7":
			if d.Attempt == 1 {
				return errors.New("try again")
			}
		}
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.ConsumeBatch(ctx, consumerConfig(5), 100, 50*time.Millisecond, rec.handle) }()
	t.Cleanup(func() { cancel(); <-done })

	waitSettled(t, b, n+1) // every message once, r7 twice
	batches, deliveries, biggest, subjects := rec.seen()
	if deliveries != n+1 || biggest > 100 || batches > 10 {
		t.Fatalf("%d deliveries in %d batches (biggest %d), want %d in a few batches of at most 100", deliveries, batches, biggest, n+1)
	}
	if subjects["r7"] != 2 || subjects["r5"] != 1 || subjects["r0"] != 1 {
		t.Fatalf("r5 %d, r7 %d, r0 %d deliveries", subjects["r5"], subjects["r7"], subjects["r0"])
	}
	if got := streamMsgs(t, b, events.StreamDLQ); got != 1 {
		t.Fatalf("%d dead letters, want r5's", got)
	}
}

func TestConsumeBatchKeepsASlowBatchInProgress(t *testing.T) {
	b, _ := newBus(t)
	publishEvent(t, b, events.RegistrationConfirmed)
	rec := &batchRecorder{reply: func(bus.Delivery) error { return nil }, slow: 2500 * time.Millisecond}
	cfg := consumerConfig(5)
	cfg.AckWait = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.ConsumeBatch(ctx, cfg, 10, 0, rec.handle) }()
	t.Cleanup(func() { cancel(); <-done })
	waitSettled(t, b, 1)
	if _, deliveries, _, _ := rec.seen(); deliveries != 1 {
		t.Fatalf("%d deliveries of one message handled for 2.5 s with a 1 s ack wait, want 1", deliveries)
	}
}
