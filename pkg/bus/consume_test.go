package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

const durable = "notifier"

// consumerConfig retries quickly so that tests of retries stay fast.
func consumerConfig(maxDeliver int) bus.ConsumerConfig {
	return bus.ConsumerConfig{
		Stream:         events.StreamRegistration,
		Durable:        durable,
		FilterSubjects: []string{events.AllRegistrations},
		MaxDeliver:     maxDeliver,
		Backoff:        func(int) time.Duration { return 10 * time.Millisecond },
	}
}

// consumer is a b.Consume running in the background.
type consumer struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Consume returns
	err    error         // what it returned, once done is closed
}

// wait waits up to timeout for Consume to return and fails t otherwise.
func (c *consumer) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		t.Fatalf("Consume did not return within %s", timeout)
		return nil
	}
}

// consume runs b.Consume in the background until t ends.
func consume(t *testing.T, b *bus.Bus, cfg bus.ConsumerConfig, h bus.Handler) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = b.Consume(ctx, cfg, h)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Error("Consume did not return within 10s of cancel")
		}
	})
	return c
}

// recorder is a handler that records every delivery and answers with the
// result of reply for it.
type recorder struct {
	mu    sync.Mutex
	got   []bus.Delivery
	reply func(d bus.Delivery) error
}

func (r *recorder) handle(_ context.Context, d bus.Delivery) error {
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	return r.reply(d)
}

func (r *recorder) deliveries() []bus.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *recorder) attempts() []int {
	var out []int
	for _, d := range r.deliveries() {
		out = append(out, d.Attempt)
	}
	return out
}

func publishEvent(t *testing.T, b *bus.Bus, typ string) events.Envelope {
	t.Helper()
	env, err := events.New("test", typ, "r1", events.Registration{ID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.PublishEvent(ctx, env); err != nil {
		t.Fatal(err)
	}
	return env
}

func consumerInfo(b *bus.Bus) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := b.JS.Consumer(ctx, events.StreamRegistration, durable)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// waitSettled waits until the consumer has delivered every message it holds
// and has none left awaiting an ack.
func waitSettled(t *testing.T, b *bus.Bus, delivered uint64) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	testkit.Eventually(t, 5*time.Second, func() error {
		var err error
		info, err = consumerInfo(b)
		if err != nil {
			return err
		}
		if info.Delivered.Consumer != delivered || info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("delivered %d (want %d), ack pending %d, pending %d, redelivered %d",
				info.Delivered.Consumer, delivered, info.NumAckPending, info.NumPending, info.NumRedelivered)
		}
		return nil
	})
	return info
}

func dlqMsg(t *testing.T, b *bus.Bus) *jetstream.RawStreamMsg {
	t.Helper()
	var msg *jetstream.RawStreamMsg
	testkit.Eventually(t, 5*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := b.JS.Stream(ctx, events.StreamDLQ)
		if err != nil {
			return err
		}
		msg, err = s.GetLastMsgForSubject(ctx, events.DLQSubject(events.StreamRegistration, durable))
		return err
	})
	return msg
}

func TestConsumeAcksOnSuccess(t *testing.T) {
	t.Parallel()
	b, _ := newBus(t)
	rec := &recorder{reply: func(bus.Delivery) error { return nil }}
	consume(t, b, consumerConfig(5), rec.handle)
	env := publishEvent(t, b, events.RegistrationConfirmed)

	waitSettled(t, b, 1)
	got := rec.deliveries()
	if len(got) != 1 {
		t.Fatalf("handler called %d times, want 1", len(got))
	}
	d := got[0]
	if d.Envelope.ID != env.ID || d.Subject != events.RegistrationConfirmed || d.Attempt != 1 || d.LastAttempt {
		t.Errorf("delivery = id %s subject %s attempt %d last %v; want id %s subject %s attempt 1 last false",
			d.Envelope.ID, d.Subject, d.Attempt, d.LastAttempt, env.ID, events.RegistrationConfirmed)
	}
	if d.Header.Get(jetstream.MsgIDHeader) != env.ID {
		t.Errorf("header Nats-Msg-Id = %q, want %q", d.Header.Get(jetstream.MsgIDHeader), env.ID)
	}
	if n := streamMsgs(t, b, events.StreamDLQ); n != 0 {
		t.Errorf("DLQ holds %d messages, want 0", n)
	}
}

func TestConsumeFilters(t *testing.T) {
	t.Parallel()
	b, _ := newBus(t)
	rec := &recorder{reply: func(bus.Delivery) error { return nil }}
	consume(t, b, consumerConfig(5), rec.handle)
	publishEvent(t, b, events.EventCreated) // outside registration.v1.registration.>
	want := publishEvent(t, b, events.RegistrationCancelled)

	waitSettled(t, b, 1)
	got := rec.deliveries()
	if len(got) != 1 || got[0].Envelope.ID != want.ID {
		t.Fatalf("handler saw %d deliveries, want only %s", len(got), want.Type)
	}
}

func TestConsumeRetriesTemporaryFailures(t *testing.T) {
	t.Parallel()
	tests := map[string]func(d bus.Delivery) error{
		"error": func(d bus.Delivery) error {
			if d.Attempt < 3 {
				return errors.New("mongo unavailable")
			}
			return nil
		},
		"panic": func(d bus.Delivery) error {
			if d.Attempt < 3 {
				panic("nil map")
			}
			return nil
		},
	}
	for name, reply := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, _ := newBus(t)
			rec := &recorder{reply: reply}
			consume(t, b, consumerConfig(5), rec.handle)
			publishEvent(t, b, events.RegistrationConfirmed)

			testkit.Eventually(t, 5*time.Second, func() error {
				info, err := consumerInfo(b)
				if err != nil {
					return err
				}
				if got := rec.attempts(); !slices.Equal(got, []int{1, 2, 3}) || info.NumAckPending != 0 {
					return fmt.Errorf("attempts %v (want [1 2 3]), ack pending %d", got, info.NumAckPending)
				}
				return nil
			})
			for _, d := range rec.deliveries() {
				if d.LastAttempt {
					t.Errorf("attempt %d of 5 marked as the last", d.Attempt)
				}
			}
			if n := streamMsgs(t, b, events.StreamDLQ); n != 0 {
				t.Errorf("DLQ holds %d messages after a retried success, want 0", n)
			}
		})
	}
}

func TestConsumeDeadLetters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       []byte // nil: a valid envelope
		reply      func(bus.Delivery) error
		wantCalls  []int
		wantReason []string
	}{
		{
			name: "permanent error",
			reply: func(bus.Delivery) error {
				return fmt.Errorf("render: %w", bus.Permanent(errors.New("unknown locale xx")))
			},
			wantCalls:  []int{1},
			wantReason: []string{"unknown locale xx"},
		},
		{
			name:       "temporary error until MaxDeliver",
			reply:      func(bus.Delivery) error { return errors.New("smtp 451") },
			wantCalls:  []int{1, 2, 3},
			wantReason: []string{"gave up after 3 deliveries", "smtp 451"},
		},
		{
			name:       "not a CloudEvents envelope",
			body:       []byte("registration confirmed!"),
			reply:      func(bus.Delivery) error { return nil },
			wantCalls:  nil,
			wantReason: []string{"CloudEvents"},
		},
		{
			name:       "envelope without source",
			body:       []byte(`{"specversion":"1.0","id":"x1","type":"registration.v1.registration.confirmed"}`),
			reply:      func(bus.Delivery) error { return nil },
			wantCalls:  nil,
			wantReason: []string{"source"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, _ := newBus(t)
			rec := &recorder{reply: tc.reply}
			consume(t, b, consumerConfig(3), rec.handle)

			body, msgID := tc.body, "raw-1"
			if body == nil {
				env := publishEvent(t, b, events.RegistrationConfirmed)
				body, msgID = nil, env.ID
				var err error
				if body, err = env.Marshal(); err != nil {
					t.Fatal(err)
				}
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := b.Publish(ctx, events.RegistrationConfirmed, msgID, body); err != nil {
					t.Fatal(err)
				}
			}

			msg := dlqMsg(t, b)
			reason := msg.Header.Get(bus.HeaderReason)
			for _, want := range tc.wantReason {
				if !strings.Contains(reason, want) {
					t.Errorf("%s = %q, want it to mention %q", bus.HeaderReason, reason, want)
				}
			}
			if string(msg.Data) != string(body) {
				t.Errorf("dead letter body = %q, want the original %q", msg.Data, body)
			}
			hdr := map[string]string{
				bus.HeaderStream:   events.StreamRegistration,
				bus.HeaderConsumer: durable,
				bus.HeaderSubject:  events.RegistrationConfirmed,
			}
			for k, want := range hdr {
				if got := msg.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			// The copy has an id of its own: two consumers dead-lettering the
			// same message must both land in the DLQ.
			if id := msg.Header.Get(jetstream.MsgIDHeader); id == "" || id == msgID {
				t.Errorf("dead letter Nats-Msg-Id = %q, want one derived from stream, consumer and sequence", id)
			}

			// Terminated: nothing awaits an ack or a redelivery.
			testkit.Eventually(t, 5*time.Second, func() error {
				info, err := consumerInfo(b)
				if err != nil {
					return err
				}
				if info.NumAckPending != 0 || info.NumPending != 0 {
					return fmt.Errorf("ack pending %d, pending %d", info.NumAckPending, info.NumPending)
				}
				return nil
			})
			if got := rec.attempts(); !slices.Equal(got, tc.wantCalls) {
				t.Errorf("handler attempts = %v, want %v", got, tc.wantCalls)
			}
			if d := rec.deliveries(); len(d) == 3 && !d[2].LastAttempt {
				t.Error("the delivery at MaxDeliver must be marked LastAttempt")
			}
			if n := streamMsgs(t, b, events.StreamDLQ); n != 1 {
				t.Errorf("DLQ holds %d messages, want 1", n)
			}
		})
	}
}

func TestConsumeRunsWorkersConcurrently(t *testing.T) {
	t.Parallel()
	b, _ := newBus(t)
	const workers = 3
	var mu sync.Mutex
	inFlight := 0
	all := make(chan struct{})
	handler := func(ctx context.Context, d bus.Delivery) error {
		mu.Lock()
		inFlight++
		if inFlight == workers {
			close(all)
		}
		mu.Unlock()
		// Each handler holds its worker until all of them run at once.
		select {
		case <-all:
			return nil
		case <-time.After(5 * time.Second):
			return bus.Permanent(errors.New("handlers did not run concurrently"))
		}
	}
	cfg := consumerConfig(1)
	cfg.Workers = workers
	consume(t, b, cfg, handler)
	for range workers {
		publishEvent(t, b, events.RegistrationConfirmed)
	}
	waitSettled(t, b, workers)
	if n := streamMsgs(t, b, events.StreamDLQ); n != 0 {
		t.Fatalf("DLQ holds %d messages: the %d workers did not run at once", n, workers)
	}
}

func TestConsumeReturnsOnCancel(t *testing.T) {
	t.Parallel()
	b, _ := newBus(t)
	rec := &recorder{reply: func(bus.Delivery) error { return nil }}
	c := consume(t, b, consumerConfig(5), rec.handle)
	// Once a message went through, Consume is past its start-up and idle.
	publishEvent(t, b, events.RegistrationConfirmed)
	waitSettled(t, b, 1)
	c.cancel()
	if err := c.wait(t, 3*time.Second); err != nil {
		t.Fatalf("Consume = %v after cancel, want nil", err)
	}
}

func TestConsumeFinishesInFlightOnCancel(t *testing.T) {
	t.Parallel()
	b, _ := newBus(t)
	started := make(chan struct{})
	release := make(chan struct{})
	var calls sync.WaitGroup
	var handlerCtxErr error
	handler := func(ctx context.Context, d bus.Delivery) error {
		defer calls.Done()
		close(started) // a second call would panic: it must not happen
		<-release
		handlerCtxErr = ctx.Err()
		return nil
	}
	calls.Add(1)
	c := consume(t, b, consumerConfig(5), handler)
	publishEvent(t, b, events.RegistrationConfirmed)

	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called within 5s")
	}
	c.cancel()
	select {
	case <-c.done:
		t.Fatal("Consume returned while a delivery was in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := c.wait(t, 5*time.Second); err != nil {
		t.Fatalf("Consume = %v, want nil", err)
	}
	calls.Wait()
	if handlerCtxErr != nil {
		t.Errorf("the in-flight handler's context was cancelled (%v); shutdown must let it finish", handlerCtxErr)
	}
	// Acked, not left to the 30s AckWait.
	waitSettled(t, b, 1)
}
