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

	"github.com/plenaryhq/plenary/pkg/events"
)

// Delivery is one message handed to a Handler.
type Delivery struct {
	Envelope events.Envelope
	Subject  string
	Header   nats.Header
	// Attempt counts deliveries of this message, from 1.
	Attempt int
	// LastAttempt is true when a temporary failure now will not be retried.
	LastAttempt bool
	// TraceParent is the W3C trace context the message carries, if any.
	TraceParent string
}

// Handler processes one delivery. It returns nil when done (the message is
// acked), a Permanent error when the message can never succeed (it is
// terminated and copied to the DLQ), and any other error to have it retried
// with backoff. Every handler must tolerate seeing a message twice.
type Handler func(ctx context.Context, d Delivery) error

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying will not fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// ConsumerConfig describes a durable pull consumer and how to run it.
type ConsumerConfig struct {
	Stream         string
	Durable        string
	FilterSubjects []string
	// Workers is the number of messages handled at once (default 1).
	Workers int
	// MaxDeliver bounds deliveries of one message (default 50: with the
	// default backoff, about 45 minutes of retrying, so an outage of MongoDB
	// or NATS that long dead-letters nothing).
	MaxDeliver int
	// AckWait is how long a delivery may take before it is redelivered
	// (default 30s).
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered but not yet acked, those
	// waiting for a delayed retry included (default max(4×Workers, 64)).
	// A consumer whose retries wait long (the mailer) needs it high, or a
	// batch of retries holds everything else back.
	MaxAckPending int
	// Backoff returns the delay before retry number attempt (from 1) after a
	// temporary failure; default: 1s doubling, at most 1 minute.
	Backoff func(attempt int) time.Duration
}

// DefaultBackoff waits 1s, 2s, 4s … up to a minute.
func DefaultBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := time.Second << min(attempt-1, 6)
	return min(d, time.Minute)
}

func (c *ConsumerConfig) defaults() {
	if c.Workers <= 0 {
		c.Workers = 1
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 50
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = max(c.Workers*4, 64)
	}
}

// Consume runs handler on the durable consumer until ctx ends, then stops
// pulling and waits for the deliveries in flight to finish (their acks still
// go out, so nothing is left to the ack timeout).
func (b *Bus) Consume(ctx context.Context, cfg ConsumerConfig, handler Handler) error {
	cfg.defaults()
	cons, stop, err := b.durable(ctx, cfg)
	if err != nil || cons == nil {
		return err
	}
	defer stop()

	// Pull only as many messages as there are idle workers, so nothing sits
	// in a client-side buffer at shutdown waiting for its ack timeout.
	// In-flight deliveries finish with a context of their own: a shutdown
	// must not turn a half-sent email into a retry.
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
		idle := 1
	claim:
		for idle < cfg.Workers {
			select {
			case sem <- struct{}{}:
				idle++
			default:
				break claim
			}
		}
		msgs, err := pull(cons, idle)
		got := len(msgs)
		for _, msg := range msgs {
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				b.handle(work, cfg, handler, msg)
			}()
		}
		for range idle - got {
			<-sem
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

// durable creates or updates cfg's durable consumer and watches its
// max-deliveries advisories until stop is called. A nil consumer and no
// error mean the service shut down while starting.
func (b *Bus) durable(ctx context.Context, cfg ConsumerConfig) (cons jetstream.Consumer, stop func(), err error) {
	cons, err = b.JS.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		FilterSubjects: cfg.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.MaxDeliver,
		MaxAckPending:  cfg.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("bus: consumer %s/%s: %w", cfg.Stream, cfg.Durable, err)
	}
	watch, err := b.watchMaxDeliveries(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("bus: watch max deliveries of %s/%s: %w", cfg.Stream, cfg.Durable, err)
	}
	return cons, func() { _ = watch.Unsubscribe() }, nil
}

// pull takes up to n messages that are ready now or, when none are, waits up
// to half a second for the next one.
func pull(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	collect := func(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
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
	msgs, err := collect(cons.FetchNoWait(n))
	if len(msgs) > 0 || err != nil {
		return msgs, err
	}
	return collect(cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond)))
}

func (b *Bus) handle(ctx context.Context, cfg ConsumerConfig, handler Handler, msg jetstream.Msg) {
	d, ctx, log, err := b.delivery(ctx, cfg, msg)
	if err == nil {
		err = safeHandle(ctx, handler, d)
	}
	b.settle(ctx, cfg, log, msg, d.Attempt, err)
}

// delivery parses msg for a handler: its envelope, attempt and trace (put
// into ctx and the logger). A message that is no envelope is an error
// marked Permanent.
func (b *Bus) delivery(ctx context.Context, cfg ConsumerConfig, msg jetstream.Msg) (Delivery, context.Context, *slog.Logger, error) {
	attempt := 1
	if md, err := msg.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	log := b.log.With("stream", cfg.Stream, "consumer", cfg.Durable, "subject", msg.Subject(), "attempt", attempt)
	d := Delivery{Subject: msg.Subject(), Header: msg.Headers(), Attempt: attempt, LastAttempt: attempt >= cfg.MaxDeliver}
	env, err := events.Parse(msg.Data())
	if err != nil {
		return d, ctx, log, Permanent(err)
	}
	d.Envelope = env
	tp := msg.Headers().Get(events.TraceHeader)
	if tp == "" {
		tp = env.TraceParent
	}
	if id := events.TraceID(tp); id != "" {
		d.TraceParent = tp
		ctx = events.WithTrace(ctx, tp)
		log = log.With("trace_id", id)
	}
	return d, ctx, log.With("msg_id", env.ID), nil
}

// settle acks msg, dead-letters it or has it redelivered after a backoff,
// as the handler's err says.
func (b *Bus) settle(ctx context.Context, cfg ConsumerConfig, log *slog.Logger, msg jetstream.Msg, attempt int, err error) {
	switch {
	case err == nil:
		if err := msg.Ack(); err != nil {
			log.Warn("ack failed; the message will be redelivered", "err", err)
		}
	case IsPermanent(err) || attempt >= cfg.MaxDeliver:
		reason := err.Error()
		if !IsPermanent(err) {
			reason = fmt.Sprintf("gave up after %d deliveries: %s", attempt, reason)
		}
		log.Error("message dead-lettered", "reason", reason)
		if dlqErr := b.deadLetter(ctx, cfg, msg, reason); dlqErr != nil {
			// Leave it unacked: it comes back after AckWait and we try again.
			log.Error("dead-letter failed", "err", dlqErr)
			return
		}
		_ = msg.TermWithReason(truncate(reason, 200))
	default:
		delay := cfg.Backoff(attempt)
		log.Warn("handler failed; retrying", "err", err, "delay", delay)
		_ = msg.NakWithDelay(delay)
	}
}

func safeHandle(ctx context.Context, h Handler, d Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return h(ctx, d)
}

// DLQ headers record where a dead letter came from and why.
const (
	HeaderReason   = "Plenary-Dlq-Reason"
	HeaderStream   = "Plenary-Dlq-Stream"
	HeaderConsumer = "Plenary-Dlq-Consumer"
	HeaderSubject  = "Plenary-Dlq-Subject"
)

func (b *Bus) deadLetter(ctx context.Context, cfg ConsumerConfig, msg jetstream.Msg, reason string) error {
	hdr := dlqHeader(msg.Headers(), cfg, msg.Subject(), reason)
	id := cfg.Durable + ":" + msg.Subject()
	if md, err := msg.Metadata(); err == nil {
		id = fmt.Sprintf("%s:%s:%d", cfg.Stream, cfg.Durable, md.Sequence.Stream)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return b.publishMsg(ctx, &nats.Msg{Subject: events.DLQSubject(cfg.Stream, cfg.Durable), Data: msg.Data(), Header: hdr}, id)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Log returns log with the trace id of the delivery being handled in ctx, so
// a handler's lines join the trace of the request that caused them.
func Log(ctx context.Context, log *slog.Logger) *slog.Logger {
	if id := events.TraceID(events.TraceFrom(ctx)); id != "" {
		return log.With("trace_id", id)
	}
	return log
}
