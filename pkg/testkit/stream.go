package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/events"
)

// ReadStream returns every envelope in the stream, oldest first.
func ReadStream(t testing.TB, js jetstream.JetStream, name string) []events.Envelope {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("testkit: stream %s: %v", name, err)
	}
	// A short inactivity limit: tests poll with this, and every call's
	// consumer would otherwise linger on the server for minutes.
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{InactiveThreshold: time.Second})
	if err != nil {
		t.Fatalf("testkit: stream %s: %v", name, err)
	}
	want := int(stream.CachedInfo().State.Msgs)
	out := make([]events.Envelope, 0, want)
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 1000), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("testkit: stream %s: %v", name, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			env, err := events.Parse(msg.Data())
			if err != nil {
				t.Fatalf("testkit: stream %s: %v", name, err)
			}
			out = append(out, env)
		}
		if got == 0 {
			t.Fatalf("testkit: stream %s: read %d of %d messages: %v", name, len(out), want, batch.Error())
		}
	}
	return out
}

// OfType keeps the envelopes of type typ.
func OfType(envs []events.Envelope, typ string) []events.Envelope {
	var out []events.Envelope
	for _, e := range envs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// WaitIdle waits until the durable consumer has handled everything its
// stream holds for it: nothing pending, nothing awaiting an ack, nothing
// waiting to be redelivered. Count outcomes after it, so that a late
// duplicate (a redelivery, a replay) has had its chance to show.
func WaitIdle(t testing.TB, js jetstream.JetStream, stream, durable string) {
	t.Helper()
	Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, stream, durable)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return Errorf("%s/%s: %d pending, %d awaiting ack, %d redelivered",
				stream, durable, info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		return nil
	})
}
