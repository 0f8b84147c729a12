package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func msgWithID(subject, id string) *nats.Msg {
	env, err := events.NewWithID(id, "test", subject, id, map[string]string{})
	if err != nil {
		panic(err)
	}
	body, _ := env.Marshal()
	m := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m
}

// A batch is stored whole and in order; a replay of it (every id known to
// the server, which refuses such an atomic batch) stores nothing twice; a
// batch mixing old and new ids stores exactly the new ones.
func TestPublishBatch(t *testing.T) {
	b, _ := newBus(t)
	ctx := context.Background()
	subject := events.RegistrationConfirmed
	batch := func(from, to int) []*nats.Msg {
		var out []*nats.Msg
		for i := from; i < to; i++ {
			out = append(out, msgWithID(subject, fmt.Sprintf("m-%04d", i)))
		}
		return out
	}
	if err := b.PublishBatch(ctx, batch(0, 1200)); err != nil { // two atomic batches
		t.Fatal(err)
	}
	if n := streamMsgs(t, b, events.StreamRegistration); n != 1200 {
		t.Fatalf("%d stored, want 1200", n)
	}
	if err := b.PublishBatch(ctx, batch(0, 50)); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if err := b.PublishBatch(ctx, batch(1190, 1210)); err != nil {
		t.Fatalf("half new: %v", err)
	}
	if n := streamMsgs(t, b, events.StreamRegistration); n != 1210 {
		t.Fatalf("%d stored after the replays, want 1210", n)
	}
	envs := testkit.ReadStream(t, b.JS, events.StreamRegistration)
	for i, e := range envs {
		if want := fmt.Sprintf("m-%04d", i); e.ID != want {
			t.Fatalf("message %d is %s, want %s: order lost", i, e.ID, want)
		}
	}
}

// Many goroutines publishing at once through a Committer: every message is
// stored, once.
func TestCommitterGroupsConcurrentPublishes(t *testing.T) {
	b, _ := newBus(t)
	c := bus.NewCommitter(b, 2)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs <- c.Publish(ctx, msgWithID(events.RegistrationConfirmed, fmt.Sprintf("c-%d", i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := streamMsgs(t, b, events.StreamRegistration); got != n {
		t.Fatalf("%d stored, want %d", got, n)
	}
}

// With NATS away a publish fails at once instead of hanging, and the
// Committer keeps working once NATS is back.
func TestCommitterDuringOutage(t *testing.T) {
	b, n := newBus(t)
	c := bus.NewCommitter(b, 1)
	defer c.Close()
	ctx := context.Background()
	n.Stop()
	start := time.Now()
	if err := c.Publish(ctx, msgWithID(events.RegistrationConfirmed, "down")); err == nil {
		t.Fatal("published while NATS was stopped")
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("failing took %s", d)
	}
	n.Restart(t)
	testkit.Eventually(t, 10*time.Second, func() error {
		return c.Publish(ctx, msgWithID(events.RegistrationConfirmed, "up"))
	})
}

// A message whose id is stored already (a retry) is answered as stored, and
// the others published with it are stored once: in a small batch (one by
// one) and in a large one (atomic, refused whole, then one by one).
func TestCommitterRetriedIDsAmongNewOnes(t *testing.T) {
	b, _ := newBus(t)
	c := bus.NewCommitter(b, 1)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Publish(ctx, msgWithID(events.RegistrationConfirmed, "again")); err != nil {
		t.Fatal(err)
	}
	stored := uint64(1)
	for _, n := range []int{3, 40} {
		var wg sync.WaitGroup
		errs := make(chan error, n+1)
		for i := range n + 1 {
			id := fmt.Sprintf("new-%d-%d", n, i)
			if i == n/2 {
				id = "again"
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- c.Publish(ctx, msgWithID(events.RegistrationConfirmed, id))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("batch of %d: %v", n+1, err)
			}
		}
		stored += uint64(n)
		if got := streamMsgs(t, b, events.StreamRegistration); got != stored {
			t.Fatalf("after a batch of %d: %d stored, want %d", n+1, got, stored)
		}
	}
}
