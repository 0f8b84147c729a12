package bus_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
