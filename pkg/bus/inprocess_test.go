package bus_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// countingServer hands out in-memory connections to a server and counts
// them.
type countingServer struct {
	s     *server.Server
	conns atomic.Int32
}

func (c *countingServer) InProcessConn() (net.Conn, error) {
	c.conns.Add(1)
	return c.s.InProcessConn()
}

// A server registered for its URL is reached in memory, JetStream and all;
// once unregistered, the same URL is dialled over TCP again.
func TestConnectInProcess(t *testing.T) {
	n := testkit.StartNATS(t)
	srv := &countingServer{s: n.Server}
	unregister := bus.RegisterInProcess(n.URL, srv)
	t.Cleanup(unregister) // also when the test fails before it unregisters
	b := n.Bus(t, events.StreamRegistration)
	if got := srv.conns.Load(); got != 1 {
		t.Fatalf("%d in-memory connections, want 1", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	env, err := events.NewWithID("m-1", "test", events.RegistrationConfirmed, "r-1", map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PublishEvent(ctx, env); err != nil {
		t.Fatalf("publish in memory: %v", err)
	}
	if got := testkit.ReadStream(t, b.JS, events.StreamRegistration); len(got) != 1 || got[0].ID != "m-1" {
		t.Fatalf("stream holds %+v, want m-1", got)
	}

	unregister()
	if len(bus.InProcessOptions(n.URL)) != 0 {
		t.Fatal("still registered after unregister")
	}
	n.Bus(t)
	if got := srv.conns.Load(); got != 1 {
		t.Fatalf("%d in-memory connections after unregister, want still 1", got)
	}
}
