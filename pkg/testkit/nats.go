package testkit

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/embedded"
)

// NATS is an embedded NATS server with JetStream, private to one test.
type NATS struct {
	URL    string
	Server *server.Server
	dir    string
	port   int
}

// StartNATS starts a NATS server for t, stopped when t ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{dir: t.TempDir(), port: -1}
	n.start(t)
	n.port = n.Server.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.Stop)
	return n
}

func (n *NATS) start(t testing.TB) {
	t.Helper()
	ns, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: n.dir, Port: n.port})
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	n.Server = ns
	n.URL = ns.ClientURL()
}

// Stop shuts the server down, as an outage would.
func (n *NATS) Stop() {
	if n.Server != nil {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
	}
}

// Restart starts the server again on the same port with the same store, so
// clients reconnect and the streams are as they were.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Stop()
	n.start(t)
}

// Bus connects to the server for t, creates the named streams, and closes
// the connection when t ends.
func (n *NATS) Bus(t testing.TB, streams ...string) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, n.URL, t.Name(), 5*time.Second, Logger(t))
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	t.Cleanup(b.Close)
	if err := b.EnsureStreams(ctx, 1, streams...); err != nil {
		t.Fatalf("testkit: %v", err)
	}
	return b
}
