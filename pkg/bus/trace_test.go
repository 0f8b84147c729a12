package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
)

func TestTraceTravelsInHeaderAndContext(t *testing.T) {
	b, _ := newBus(t)
	tp := events.NewTraceParent()
	env, err := events.New("test", events.RegistrationConfirmed, "r1", events.Registration{ID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	env.TraceParent = tp
	if err := b.PublishEvent(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	stream, err := b.JS.Stream(context.Background(), events.StreamRegistration)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get(events.TraceHeader); got != tp {
		t.Fatalf("traceparent header %q, want %q", got, tp)
	}

	got := make(chan string, 1)
	consume(t, b, consumerConfig(3), func(ctx context.Context, d bus.Delivery) error {
		got <- events.TraceFrom(ctx)
		return nil
	})
	select {
	case seen := <-got:
		if seen != tp {
			t.Fatalf("handler context trace %q, want %q", seen, tp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
}
