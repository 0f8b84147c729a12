package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// newBus starts a NATS server for t and connects to it with the
// REGISTRATION and DLQ streams in place.
func newBus(t *testing.T) (*bus.Bus, *testkit.NATS) {
	t.Helper()
	n := testkit.StartNATS(t)
	b := n.Bus(t, events.StreamRegistration, events.StreamDLQ)
	return b, n
}

func streamMsgs(t *testing.T, b *bus.Bus, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := b.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestConnectUnreachable(t *testing.T) {
	start := time.Now()
	// Port 1 on loopback refuses connections.
	_, err := bus.Connect(context.Background(), "nats://127.0.0.1:1", "test", 300*time.Millisecond, testkit.Logger(t))
	if err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "NATS_URL") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error %q should name the URL and NATS_URL", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Connect took %s with a 300ms wait", elapsed)
	}
}

func TestConnectStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := bus.Connect(ctx, "nats://127.0.0.1:1", "test", time.Minute, testkit.Logger(t))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect = %v, want the context's error", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Connect took %s after its context ended", elapsed)
	}
}

func TestReady(t *testing.T) {
	b, n := newBus(t)
	ready := func() error {
		// A request made while the client is reconnecting waits for the
		// context, as the /readyz timeout does.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		return b.Ready(ctx)
	}
	if err := ready(); err != nil {
		t.Fatalf("Ready = %v with NATS up", err)
	}
	n.Stop()
	testkit.Eventually(t, 5*time.Second, func() error {
		if ready() == nil {
			return errors.New("still ready with NATS stopped")
		}
		return nil
	})
}

func TestEnsureStreamsIsIdempotent(t *testing.T) {
	b, _ := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all := []string{events.StreamRegistration, events.StreamAgenda, events.StreamMail, events.StreamMailStatus, events.StreamDLQ, events.StreamMailSent}
	for i := range 2 {
		if err := b.EnsureStreams(ctx, 1, all...); err != nil {
			t.Fatalf("EnsureStreams, call %d: %v", i+1, err)
		}
	}
	for _, name := range all {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		got := s.CachedInfo().Config
		want := events.Streams(1)[name]
		if got.Retention != want.Retention || strings.Join(got.Subjects, ",") != strings.Join(want.Subjects, ",") {
			t.Errorf("stream %s: retention %v subjects %v, want %v %v", name, got.Retention, got.Subjects, want.Retention, want.Subjects)
		}
	}
	if err := b.EnsureStreams(ctx, 1, "NOPE"); err == nil || !strings.Contains(err.Error(), "NOPE") {
		t.Errorf("EnsureStreams(NOPE) = %v, want an error naming it", err)
	}
}

// NATS refuses to change a stream's persist mode in place. A sent ledger
// made before it was persisted asynchronously keeps its records, and its
// fsyncs, with the rest of its configuration updated; an empty one is
// recreated.
func TestEnsureStreamsKeepsARecordedLedgersPersistMode(t *testing.T) {
	b, _ := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := events.Streams(1)[events.StreamMailSent]
	if want.PersistMode != jetstream.AsyncPersistMode {
		t.Fatalf("MAIL_SENT's persist mode is %v: this test is about moving it to async", want.PersistMode)
	}
	old := want
	old.PersistMode = jetstream.DefaultPersistMode
	old.MaxAge = time.Hour
	create := func() {
		t.Helper()
		_ = b.JS.DeleteStream(ctx, old.Name)
		if _, err := b.JS.CreateStream(ctx, old); err != nil {
			t.Fatal(err)
		}
	}
	config := func() (jetstream.StreamConfig, uint64) {
		t.Helper()
		s, err := b.JS.Stream(ctx, old.Name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Config, info.State.Msgs
	}

	create()
	if _, err := b.JS.Publish(ctx, "mail-sent.v1.sent", []byte(`{"sent":[]}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureStreams(ctx, 1, old.Name); err != nil {
		t.Fatalf("EnsureStreams over a ledger with records: %v", err)
	}
	got, msgs := config()
	if got.PersistMode != jetstream.DefaultPersistMode || msgs != 1 || got.MaxAge != want.MaxAge {
		t.Errorf("a ledger with records: persist mode %v, %d records, MaxAge %v; want it kept, 1, %v",
			got.PersistMode, msgs, got.MaxAge, want.MaxAge)
	}

	create()
	if err := b.EnsureStreams(ctx, 1, old.Name); err != nil {
		t.Fatalf("EnsureStreams over an empty ledger: %v", err)
	}
	if got, _ := config(); got.PersistMode != jetstream.AsyncPersistMode || got.MaxAge != want.MaxAge {
		t.Errorf("an empty ledger: persist mode %v, MaxAge %v; want recreated as %v, %v", got.PersistMode, got.MaxAge, want.PersistMode, want.MaxAge)
	}
}

func TestPublishDeduplicatesByMsgID(t *testing.T) {
	b, _ := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if err := b.Publish(ctx, events.RegistrationConfirmed, "msg-1", []byte("one")); err != nil {
			t.Fatal(err)
		}
	}
	if got := streamMsgs(t, b, events.StreamRegistration); got != 1 {
		t.Fatalf("after publishing msg-1 twice the stream holds %d messages, want 1", got)
	}
	if err := b.Publish(ctx, events.RegistrationConfirmed, "msg-2", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got := streamMsgs(t, b, events.StreamRegistration); got != 2 {
		t.Fatalf("after msg-2 the stream holds %d messages, want 2", got)
	}
}

func TestPublishToSubjectWithoutStreamFails(t *testing.T) {
	b, _ := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// MAIL was not created by newBus: nothing stores mail.v1.send.
	err := b.Publish(ctx, events.MailSend, "job-1", []byte("{}"))
	if err == nil || !strings.Contains(err.Error(), "job-1") {
		t.Fatalf("Publish with no stream = %v, want an error naming the msg id", err)
	}
}

func TestPublishEvent(t *testing.T) {
	b, _ := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	env, err := events.New("test", events.RegistrationConfirmed, "r1", events.Registration{ID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PublishEvent(ctx, env); err != nil {
		t.Fatal(err)
	}
	s, err := b.JS.Stream(ctx, events.StreamRegistration)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, events.RegistrationConfirmed)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get(jetstream.MsgIDHeader); got != env.ID {
		t.Errorf("Nats-Msg-Id = %q, want the envelope id %q", got, env.ID)
	}
	got, err := events.Parse(msg.Data)
	if err != nil || got.ID != env.ID || got.Subject != "r1" {
		t.Errorf("stored body parses to %+v, %v; want the envelope", got, err)
	}
}

func TestDefaultBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{-1, time.Second}, {0, time.Second}, {1, time.Second}, {2, 2 * time.Second},
		{3, 4 * time.Second}, {6, 32 * time.Second}, {7, time.Minute}, {1000, time.Minute},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.attempt), func(t *testing.T) {
			if got := bus.DefaultBackoff(tc.attempt); got != tc.want {
				t.Errorf("DefaultBackoff(%d) = %v, want %v", tc.attempt, got, tc.want)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	if bus.Permanent(nil) != nil {
		t.Error("Permanent(nil) must be nil, so `return bus.Permanent(err)` can return success")
	}
	base := errors.New("invalid address")
	p := bus.Permanent(base)
	if !errors.Is(p, base) || p.Error() != base.Error() {
		t.Errorf("Permanent(%v) = %v, must wrap it unchanged", base, p)
	}
	if !bus.IsPermanent(fmt.Errorf("send: %w", p)) {
		t.Error("IsPermanent must see through wrapping")
	}
	if bus.IsPermanent(base) || bus.IsPermanent(nil) {
		t.Error("IsPermanent of an unmarked error must be false")
	}
}
