package mailer

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// newTestPool is a pool of n connections to the harness's sink, with its
// ledger; both are closed when t ends.
func newTestPool(t *testing.T, h *harness, n int) *pool {
	t.Helper()
	met := newMetrics(prometheus.NewRegistry())
	l, err := newLedger(context.Background(), h.bus, testkit.Mongo(t), n, h.cfg.SMTP.Timeout, met, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPool(h.cfg.SMTP, n, 0, l, met)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.close(); l.close() })
	return p
}

func sendOne(p *pool, i int, held func() bool) outcome {
	done := make(chan outcome, 1)
	p.submit([]*task{{index: i, job: testJob(i), held: held, done: done}})
	return <-done
}

func TestAMessageNoLongerHeldIsWithdrawnBeforeItsEnd(t *testing.T) {
	h := newHarness(t)
	p := newTestPool(t, h, 1)
	always := func() bool { return true }

	if o := sendOne(p, 1, always); !o.sent || o.recordErr != nil {
		t.Fatalf("first email: %+v", o)
	}
	o := sendOne(p, 2, func() bool { return false })
	if o.sent || !errors.Is(o.err, errWithdrawn) || bus.IsPermanent(o.err) {
		t.Fatalf("email whose job is no longer held: %+v, want withdrawn, temporary", o)
	}
	if o := sendOne(p, 3, always); !o.sent {
		t.Fatalf("email after a withdrawal: %+v", o)
	}
	// The server discarded the withdrawn message: it never saw its end.
	msgs := h.smtp.WaitFor(t, 2, 5*time.Second)
	for _, m := range msgs {
		if m.Subject == testJob(2).Subject {
			t.Error("the withdrawn email was delivered")
		}
	}
	if a := h.smtp.Attempts(); a != 2 {
		t.Errorf("the server saw %d complete messages, want 2", a)
	}
	if c := h.smtp.Connections(); c != 2 {
		t.Errorf("%d connections, want 2: the withdrawal drops the connection, the next email redials it", c)
	}
}

func TestLeaseEndsWhenNATSConnectionDrops(t *testing.T) {
	h := newHarness(t)
	proxy := testkit.StartProxy(t, h.nats.Server.Addr().String())
	common := h.cfg.Common
	common.NATSURL = proxy.URL(h.nats.URL)
	deps, err := service.Start(context.Background(), "mailer-test", common, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer deps.Close()
	m := &mailer{bus: deps.Bus}

	held := m.lease()
	if !held() {
		t.Fatal("a fresh lease is not held")
	}
	proxy.Cut()
	testkit.Eventually(t, 10*time.Second, func() error {
		if held() {
			return errors.New("lease still held with NATS unreachable")
		}
		return nil
	})
	proxy.Restore()
	testkit.Eventually(t, 10*time.Second, func() error {
		if !deps.Bus.NC.IsConnected() {
			return fmt.Errorf("not reconnected")
		}
		return nil
	})
	if held() {
		t.Error("a lease taken before the reconnect is held after it: NATS may have redelivered its jobs")
	}
	if !m.lease()() {
		t.Error("a lease taken after the reconnect is not held")
	}
}
