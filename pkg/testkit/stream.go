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
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("testkit: stream %s: %v", name, err)
	}
	var out []events.Envelope
	for range stream.CachedInfo().State.Msgs {
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatalf("testkit: stream %s: %v", name, err)
		}
		env, err := events.Parse(msg.Data())
		if err != nil {
			t.Fatalf("testkit: stream %s: %v", name, err)
		}
		out = append(out, env)
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
