package mailer

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type harness struct {
	t    *testing.T
	nats *testkit.NATS
	smtp *testkit.SMTPSink
	bus  *bus.Bus
	cfg  Config
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, nats: testkit.StartNATS(t), smtp: testkit.StartSMTP(t)}
	h.cfg = Config{
		Common: service.Common{
			MongoURI:      testkit.MongoURI(t),
			MongoDatabase: testkit.DatabaseName(t),
			NATSURL:       h.nats.URL,
			ConnectWait:   5 * time.Second,
		},
		SMTP:       SMTPConfig{Addr: h.smtp.Addr, TLS: "none", From: "Plenary <no-reply@example.org>", Timeout: 5 * time.Second},
		Workers:    2,
		MaxDeliver: 3,
		RetryBase:  10 * time.Millisecond,
		RetryMax:   50 * time.Millisecond,
	}
	h.bus = h.nats.Bus(t, events.StreamMail, events.StreamMailStatus, events.StreamDLQ)
	return h
}

// start runs the mailer until the returned stop function is called.
func (h *harness) start() (stop func()) {
	h.t.Helper()
	cfg := h.cfg
	cfg.Listener, _ = testkit.Listen(h.t)
	return testkit.Serve(h.t, func(ctx context.Context) error { return Run(ctx, cfg, testkit.Logger(h.t)) })
}

func (h *harness) queue(n int) []string {
	h.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("test.job.%d", i)
		env, err := events.NewWithID(ids[i], "test", events.MailSend, "reg", events.MailJob{
			ID: ids[i], Kind: "confirmation", To: fmt.Sprintf("p%d@example.org", i), ToName: "Participant",
			Subject: "Subject " + ids[i], Text: "text " + ids[i], HTML: "<p>html " + ids[i] + "</p>",
		})
		if err != nil {
			h.t.Fatal(err)
		}
		if err := h.bus.PublishEvent(context.Background(), env); err != nil {
			h.t.Fatal(err)
		}
	}
	return ids
}

// statuses returns the statuses published so far, by job id, in order.
func (h *harness) statuses() map[string][]string {
	h.t.Helper()
	out := map[string][]string{}
	for _, env := range testkit.ReadStream(h.t, h.bus.JS, events.StreamMailStatus) {
		var st events.MailStatus
		if err := env.Decode(&st); err != nil {
			h.t.Fatal(err)
		}
		out[st.JobID] = append(out[st.JobID], st.Status)
	}
	return out
}

func (h *harness) waitStatus(id, want string) {
	h.t.Helper()
	testkit.Eventually(h.t, 10*time.Second, func() error {
		got := h.statuses()[id]
		if len(got) == 0 || got[len(got)-1] != want {
			return fmt.Errorf("job %s statuses %v, want last %q", id, got, want)
		}
		return nil
	})
}

func TestSendsEachJobOnceOverReusedConnections(t *testing.T) {
	h := newHarness(t)
	h.start()
	ids := h.queue(10)

	msgs := h.smtp.WaitFor(t, 10, 15*time.Second)
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.Subject]++
		if !strings.Contains(m.Text, "text ") || !strings.Contains(m.HTML, "<p>html ") {
			t.Errorf("email %q lacks its text or HTML part", m.Subject)
		}
		if got := m.Header.Get("Message-Id"); !strings.HasSuffix(got, "@plenary>") {
			t.Errorf("Message-ID %q is not derived from the job id", got)
		}
	}
	for _, id := range ids {
		if seen["Subject "+id] != 1 {
			t.Errorf("job %s arrived %d times, want 1", id, seen["Subject "+id])
		}
		h.waitStatus(id, events.MailSent)
	}
	if c := h.smtp.Connections(); c > h.cfg.Workers {
		t.Errorf("%d SMTP connections for 10 emails and %d workers: connections are not reused", c, h.cfg.Workers)
	}
}

func TestTemporaryFailureIsRetried(t *testing.T) {
	h := newHarness(t)
	h.smtp.FailTemporarily(2)
	h.start()
	ids := h.queue(1)

	msgs := h.smtp.WaitFor(t, 1, 20*time.Second)
	if msgs[0].Subject != "Subject "+ids[0] {
		t.Fatalf("got %q", msgs[0].Subject)
	}
	h.waitStatus(ids[0], events.MailSent)
	if got := h.statuses()[ids[0]]; len(got) != 3 || got[0] != events.MailDeferred || got[1] != events.MailDeferred {
		t.Errorf("statuses %v, want deferred, deferred, sent", got)
	}
}

func TestPermanentFailureIsDeadLettered(t *testing.T) {
	h := newHarness(t)
	h.smtp.FailPermanently(true)
	h.start()
	ids := h.queue(1)

	h.waitStatus(ids[0], events.MailFailed)
	testkit.Eventually(t, 5*time.Second, func() error {
		info, err := h.bus.JS.Stream(context.Background(), events.StreamDLQ)
		if err != nil {
			return err
		}
		if n := info.CachedInfo().State.Msgs; n != 1 {
			return fmt.Errorf("DLQ holds %d messages, want 1", n)
		}
		return nil
	})
	if a := h.smtp.Attempts(); a != 1 {
		t.Errorf("a 5xx was retried: %d attempts", a)
	}
}

func TestRedeliveredSentJobIsNotSentAgain(t *testing.T) {
	h := newHarness(t)
	h.start()
	ids := h.queue(1)
	h.smtp.WaitFor(t, 1, 10*time.Second)
	h.waitStatus(ids[0], events.MailSent)

	// Replay the job as a redelivery would: same job, attempt 2.
	deps, err := service.Start(context.Background(), "mailer-test", h.cfg.Common, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer deps.Close()
	p, err := newPool(h.cfg.SMTP, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	m := newMailer(deps, p, h.cfg.SMTP.From, testkit.Logger(t))
	env, _ := events.NewWithID(ids[0], "test", events.MailSend, "reg", events.MailJob{ID: ids[0], To: "p0@example.org", Subject: "again", Text: "again"})
	if err := m.handle(context.Background(), bus.Delivery{Envelope: env, Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	if a := h.smtp.Attempts(); a != 1 {
		t.Fatalf("redelivered job was sent again: %d SMTP attempts", a)
	}
}

func TestStopAndRestartLosesAndDuplicatesNothing(t *testing.T) {
	h := newHarness(t)
	h.smtp.SetDelay(30 * time.Millisecond)
	ids := h.queue(40)

	stop := h.start()
	testkit.Eventually(t, 15*time.Second, func() error {
		if n := len(h.smtp.Messages(t)); n < 5 {
			return fmt.Errorf("%d sent so far", n)
		}
		return nil
	})
	stop()
	sentBefore := len(h.smtp.Messages(t))
	if sentBefore >= len(ids) {
		t.Fatalf("all %d emails went out before the stop; the test proves nothing", sentBefore)
	}

	h.start()
	h.smtp.WaitFor(t, len(ids), 30*time.Second)
	// Count once the queue is done: a late redelivery would show now.
	testkit.WaitIdle(t, h.bus.JS, events.StreamMail, "mailer")
	msgs := h.smtp.Messages(t)
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.Subject]++
	}
	for _, id := range ids {
		if seen["Subject "+id] != 1 {
			t.Errorf("job %s arrived %d times, want exactly 1", id, seen["Subject "+id])
		}
	}
}

func TestConfigRejectsBadSMTPSettings(t *testing.T) {
	for name, cfg := range map[string]SMTPConfig{
		"no port":     {Addr: "localhost", TLS: "none"},
		"unknown tls": {Addr: "localhost:25", TLS: "sometimes"},
		"non-numeric": {Addr: "localhost:smtp", TLS: "none"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := newPool(cfg, 1); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestPermanentSMTPClassification(t *testing.T) {
	if permanentSMTP(errors.New("dial tcp: connection refused")) {
		t.Error("a network error is temporary")
	}
}

func TestAnyDisplayNameIsDelivered(t *testing.T) {
	h := newHarness(t)
	h.start()
	names := []string{`O"Brien`, `Ada Lovelace\`, `x" <attacker@evil.example>`, "Алёна Купчина"}
	for i, name := range names {
		id := fmt.Sprintf("name.%d", i)
		env, _ := events.NewWithID(id, "test", events.MailSend, "reg", events.MailJob{
			ID: id, To: fmt.Sprintf("n%d@example.org", i), ToName: name, Subject: id, Text: "t",
		})
		if err := h.bus.PublishEvent(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
	msgs := h.smtp.WaitFor(t, len(names), 15*time.Second)
	for _, m := range msgs {
		if len(m.Envelope.To) != 1 || !strings.HasSuffix(m.Envelope.To[0], "@example.org") {
			t.Errorf("%s went to %v", m.Subject, m.Envelope.To)
		}
		addr, err := netmail.ParseAddress(m.To)
		if err != nil {
			t.Errorf("To header %q does not parse: %v", m.To, err)
			continue
		}
		var i int
		fmt.Sscanf(m.Subject, "name.%d", &i)
		if addr.Name != names[i] {
			t.Errorf("display name %q, want %q", addr.Name, names[i])
		}
	}
}

func TestFailuresDoNotLeakAddresses(t *testing.T) {
	h := newHarness(t)
	h.smtp.FailPermanently(true)
	h.start()
	ids := h.queue(1)
	h.waitStatus(ids[0], events.MailFailed)
	for _, env := range testkit.ReadStream(t, h.bus.JS, events.StreamMailStatus) {
		var st events.MailStatus
		_ = env.Decode(&st)
		if strings.Contains(st.Detail, "@") {
			t.Errorf("status detail carries an address: %q", st.Detail)
		}
	}
	if got := redact("550 5.1.1 <ada@example.org>: Recipient rejected, affected recipient(s): <ada@example.org>"); strings.Contains(got, "@") {
		t.Errorf("redact left an address: %q", got)
	}
}

func TestBackoffGrowsToItsCap(t *testing.T) {
	c := Config{RetryBase: 30 * time.Second, RetryMax: 30 * time.Minute}
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 30 * time.Minute, 30 * time.Minute}
	var total time.Duration
	for i, w := range want {
		if got := c.backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	for a := 1; a < 20; a++ {
		total += c.backoff(a)
	}
	if total < 6*time.Hour {
		t.Errorf("20 attempts span %s; greylisting and relay outages need hours", total)
	}
}
