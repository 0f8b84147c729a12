package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// groups reads every message of the REGISTRATION stream and returns the
// bodies of each, split.
func groups(t *testing.T, b *bus.Bus) [][]json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := b.JS.Stream(ctx, events.StreamRegistration)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]json.RawMessage
	for seq := uint64(1); seq <= streamMsgs(t, b, events.StreamRegistration); seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		bodies, err := bus.SplitGroup(raw.Header, raw.Data)
		if err != nil {
			t.Fatal(err)
		}
		if got := bus.GroupSize(raw.Header); got != len(bodies) {
			t.Fatalf("message %d: header says %d bodies, holds %d", seq, got, len(bodies))
		}
		if len(raw.Data) > bus.MaxGroupBytes && len(bodies) > 1 {
			t.Fatalf("message %d: %d bodies in %d bytes, over MaxGroupBytes", seq, len(bodies), len(raw.Data))
		}
		out = append(out, bodies)
	}
	return out
}

// publishAll publishes bodies through c from many goroutines at once; the
// bodies of one goroutine go one after the other.
func publishAll(t *testing.T, c *bus.Committer, goroutines int, body func(g, i int) string, each int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := c.Publish(ctx, []byte(body(g, i))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Many goroutines publishing at once through a Committer: every body is
// stored once, bodies arriving together share a message, and the bodies
// of one publisher keep their order.
func TestCommitterGroupsConcurrentPublishes(t *testing.T) {
	b, _ := newBus(t)
	c := bus.NewCommitter(b, events.RegistrationConfirmed, 1, nil)
	defer c.Close()
	const goroutines, each = 64, 30
	publishAll(t, c, goroutines, func(g, i int) string { return fmt.Sprintf(`{"g":%d,"i":%d}`, g, i) }, each)

	gs := groups(t, b)
	next := make([]int, goroutines)
	var bodies int
	for _, group := range gs {
		for _, raw := range group {
			var v struct{ G, I int }
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatal(err)
			}
			if v.I != next[v.G] {
				t.Fatalf("publisher %d: body %d stored where %d was due (lost, twice or out of order)", v.G, v.I, next[v.G])
			}
			next[v.G]++
			bodies++
		}
	}
	if bodies != goroutines*each {
		t.Fatalf("%d bodies stored, want %d", bodies, goroutines*each)
	}
	if len(gs) >= bodies {
		t.Fatalf("%d messages for %d bodies: nothing was grouped", len(gs), bodies)
	}
	t.Logf("%d bodies in %d messages", bodies, len(gs))
}

// Bodies too big to share MaxGroupBytes go in several messages; one body
// over it goes alone.
func TestCommitterGroupBytes(t *testing.T) {
	b, _ := newBus(t)
	c := bus.NewCommitter(b, events.RegistrationConfirmed, 1, nil)
	defer c.Close()
	pad := strings.Repeat("x", bus.MaxGroupBytes/5)
	publishAll(t, c, 20, func(g, i int) string { return fmt.Sprintf(`{"g":%d,"pad":%q}`, g, pad) }, 1)
	huge := `{"pad":"` + strings.Repeat("y", bus.MaxGroupBytes+1) + `"}`
	if err := c.Publish(context.Background(), []byte(huge)); err != nil {
		t.Fatal(err)
	}
	gs := groups(t, b)
	var bodies int
	for _, g := range gs {
		bodies += len(g)
	}
	if bodies != 21 {
		t.Fatalf("%d bodies stored, want 21", bodies)
	}
	if last := gs[len(gs)-1]; len(last) != 1 || string(last[0]) != huge {
		t.Fatal("the body over MaxGroupBytes was not stored alone")
	}
}

// A message that is not a group is its own only body.
func TestSplitGroupPlainMessage(t *testing.T) {
	bodies, err := bus.SplitGroup(nil, []byte(`[1,2]`))
	if err != nil || len(bodies) != 1 || string(bodies[0]) != `[1,2]` {
		t.Fatalf("got %q, %v; want the data as one body", bodies, err)
	}
	if n := bus.GroupSize(nil); n != 1 {
		t.Fatalf("GroupSize of a plain message: %d", n)
	}
}

// With NATS away a publish fails at once instead of hanging, and the
// Committer keeps working once NATS is back.
func TestCommitterDuringOutage(t *testing.T) {
	b, n := newBus(t)
	c := bus.NewCommitter(b, events.RegistrationConfirmed, 1, nil)
	defer c.Close()
	ctx := context.Background()
	n.Stop()
	start := time.Now()
	if err := c.Publish(ctx, []byte(`{"down":true}`)); err == nil {
		t.Fatal("published while NATS was stopped")
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("failing took %s", d)
	}
	n.Restart(t)
	testkit.Eventually(t, 10*time.Second, func() error {
		return c.Publish(ctx, []byte(`{"up":true}`))
	})
}
