package mailer

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild() // the mailer process of TestCrashMidQueue
		return
	}
	testkit.Main(m)
}

type harness struct {
	t    testing.TB
	nats *testkit.NATS
	smtp *testkit.SMTPSink
	bus  *bus.Bus
	cfg  Config
	url  string // of the mailer started last
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, nats: testkit.StartNATS(t), smtp: testkit.StartSMTP(t)}
	h.cfg = Config{
		Common: service.Common{
			MongoURI:      testkit.MongoURI(t),
			MongoDatabase: testkit.DatabaseName(t),
			NATSURL:       h.nats.URL,
			ConnectWait:   5 * time.Second,
		},
		SMTP:        SMTPConfig{Addr: h.smtp.Addr, TLS: "none", From: "Plenary <no-reply@example.org>", Timeout: 5 * time.Second},
		Workers:     2,
		Batch:       256,
		BatchLinger: 20 * time.Millisecond,
		MaxDeliver:  5,
		RetryBase:   10 * time.Millisecond,
		RetryMax:    50 * time.Millisecond,
	}
	h.bus = h.nats.Bus(t, events.StreamMail, events.StreamMailStatus, events.StreamDLQ, events.StreamMailSent)
	return h
}

// start runs the mailer until the returned stop function is called.
func (h *harness) start() (stop func()) {
	h.t.Helper()
	cfg := h.cfg
	cfg.Listener, h.url = testkit.Listen(h.t)
	return testkit.Serve(h.t, func(ctx context.Context) error { return Run(ctx, cfg, testkit.Logger(h.t)) })
}

// testJob is job number i of a test.
func testJob(i int) events.MailJob {
	id := fmt.Sprintf("test.job.%d", i)
	return events.MailJob{
		ID: id, Kind: "confirmation", To: fmt.Sprintf("p%d@example.org", i), ToName: "Participant",
		Subject: "Subject " + id, Text: "text " + id, HTML: "<p>html " + id + "</p>",
	}
}

// queue publishes n test jobs and returns their ids.
func (h *harness) queue(n int) []string {
	h.t.Helper()
	jobs := make([]events.MailJob, n)
	for i := range jobs {
		jobs[i] = testJob(i)
	}
	return h.publish(jobs...)
}

func (h *harness) publish(jobs ...events.MailJob) []string {
	h.t.Helper()
	ids := make([]string, len(jobs))
	msgs := make([]*nats.Msg, len(jobs))
	for i, job := range jobs {
		env, err := events.NewWithID(job.ID, "test", events.MailSend, "reg", job)
		if err != nil {
			h.t.Fatal(err)
		}
		if msgs[i], err = bus.EnvelopeMsg(env); err != nil {
			h.t.Fatal(err)
		}
		ids[i] = job.ID
	}
	if err := h.bus.PublishBatch(context.Background(), msgs); err != nil {
		h.t.Fatal(err)
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

// deadLetters counts the messages on DLQ.
func (h *harness) deadLetters() int {
	h.t.Helper()
	info, err := h.bus.JS.Stream(context.Background(), events.StreamDLQ)
	if err != nil {
		h.t.Fatal(err)
	}
	return int(info.CachedInfo().State.Msgs)
}

// arrivals counts the emails at the sink per subject.
func (h *harness) arrivals() map[string]int {
	h.t.Helper()
	seen := map[string]int{}
	for _, m := range h.smtp.Messages(h.t) {
		seen[m.Subject]++
	}
	return seen
}

// duplicates checks that each job arrived and returns how many arrived more
// than once, in all.
func (h *harness) duplicates(ids []string) int {
	h.t.Helper()
	seen, dups := h.arrivals(), 0
	for _, id := range ids {
		switch n := seen["Subject "+id]; {
		case n == 0:
			h.t.Errorf("job %s never arrived", id)
		case n > 1:
			dups += n - 1
		}
	}
	return dups
}

func TestSendsEachJobOnceOverReusedConnections(t *testing.T) {
	h := newHarness(t)
	h.start()
	ids := h.queue(10)

	msgs := h.smtp.WaitFor(t, 10, 15*time.Second)
	for _, m := range msgs {
		if !strings.Contains(m.Text, "text ") || !strings.Contains(m.HTML, "<p>html ") {
			t.Errorf("email %q lacks its text or HTML part", m.Subject)
		}
		id := strings.TrimPrefix(m.Subject, "Subject ")
		if got := m.Header.Get("Message-Id"); got != "<"+id+"@plenary>" {
			t.Errorf("Message-ID %q is not derived from the job id %s", got, id)
		}
	}
	if d := h.duplicates(ids); d != 0 {
		t.Errorf("%d duplicates", d)
	}
	for _, id := range ids {
		h.waitStatus(id, events.MailSent)
	}
	if c := h.smtp.Connections(); c > h.cfg.Workers {
		t.Errorf("%d SMTP connections for 10 emails and %d workers: connections are not reused", c, h.cfg.Workers)
	}
}

func TestTemporaryFailureIsRetried(t *testing.T) {
	h := newHarness(t)
	h.smtp.FailTemporarily(3)
	h.start()
	ids := h.queue(1)

	msgs := h.smtp.WaitFor(t, 1, 20*time.Second)
	if msgs[0].Subject != "Subject "+ids[0] {
		t.Fatalf("got %q", msgs[0].Subject)
	}
	h.waitStatus(ids[0], events.MailSent)
	want := []string{events.MailDeferred, events.MailDeferred, events.MailDeferred, events.MailSent}
	if got := h.statuses()[ids[0]]; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("statuses %v, want %v", got, want)
	}
	if a := h.smtp.Attempts(); a != 4 {
		t.Errorf("%d SMTP attempts, want 4 (3 refused, 1 accepted)", a)
	}
	testkit.WaitIdle(t, h.bus.JS, events.StreamMail, "mailer")
	h.smtp.WaitFor(t, 1, time.Second)
}

func TestPermanentFailureIsDeadLettered(t *testing.T) {
	h := newHarness(t)
	h.smtp.FailPermanently(true)
	h.start()
	ids := h.queue(1)

	h.waitStatus(ids[0], events.MailFailed)
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := h.deadLetters(); n != 1 {
			return fmt.Errorf("DLQ holds %d messages, want 1", n)
		}
		return nil
	})
	// No retry storm: once the consumer is idle, still one attempt, one
	// status, one dead letter.
	testkit.WaitIdle(t, h.bus.JS, events.StreamMail, "mailer")
	if a := h.smtp.Attempts(); a != 1 {
		t.Errorf("a 5xx was retried: %d attempts", a)
	}
	if got := h.statuses()[ids[0]]; len(got) != 1 {
		t.Errorf("statuses %v, want one failed", got)
	}
	if n := h.deadLetters(); n != 1 {
		t.Errorf("DLQ holds %d messages, want 1", n)
	}
}

func TestConfigRejectsBadSMTPSettings(t *testing.T) {
	for name, cfg := range map[string]SMTPConfig{
		"no port":     {Addr: "localhost", TLS: "none"},
		"unknown tls": {Addr: "localhost:25", TLS: "sometimes"},
		"non-numeric": {Addr: "localhost:smtp", TLS: "none"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := newDialer(cfg); err == nil {
				t.Fatal("want an error")
			}
		})
	}
	if _, err := envelopeAddress("not an address"); err == nil {
		t.Error("SMTP_FROM without an address: want an error")
	}
}

func TestPermanentSMTPClassification(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{errors.New("dial tcp: connection refused"), false},
		{&textproto.Error{Code: 451, Msg: "try again later"}, false},
		{fmt.Errorf("wrapped: %w", &textproto.Error{Code: 421, Msg: "closing"}), false},
		{&textproto.Error{Code: 554, Msg: "rejected"}, true},
		{fmt.Errorf("wrapped: %w", &textproto.Error{Code: 550, Msg: "no such user"}), true},
	}
	for _, tc := range tests {
		if got := permanentSMTP(tc.err); got != tc.want {
			t.Errorf("permanentSMTP(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestAnyDisplayNameIsDelivered(t *testing.T) {
	h := newHarness(t)
	h.start()
	names := []string{`O"Brien`, `Ada Lovelace\`, `x" <attacker@evil.example>`, "Алёна Купчина"}
	var jobs []events.MailJob
	for i, name := range names {
		id := fmt.Sprintf("name.%d", i)
		jobs = append(jobs, events.MailJob{ID: id, To: fmt.Sprintf("n%d@example.org", i), ToName: name, Subject: id, Text: "t"})
	}
	h.publish(jobs...)
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

func TestTimeoutsAndBatchesFollowTheConfig(t *testing.T) {
	c := Config{SMTP: SMTPConfig{Timeout: 30 * time.Second}, Workers: 4, Batch: 256, MaxDeliver: 20,
		RetryBase: 30 * time.Second, RetryMax: 30 * time.Minute}
	// An email begun before the in-progress signals stopped must end before
	// NATS can give its job to another worker: 2/3 of AckWait (the least
	// NATS waits after the last signal) covers SMTP_TIMEOUT.
	if aw := c.ackWait(); aw*2/3 <= c.SMTP.Timeout {
		t.Errorf("AckWait %s: two thirds of it do not cover SMTP_TIMEOUT %s", aw, c.SMTP.Timeout)
	}
	if got := c.batchSize(); got != 256 {
		t.Errorf("batch %d without a rate limit, want 256", got)
	}
	c.RateLimit = 10
	if got := c.batchSize(); got != 10 {
		t.Errorf("batch %d at 10 emails/s, want about a second's worth (10)", got)
	}
	c.RateLimit = 0.5
	if got := c.batchSize(); got != c.Workers {
		t.Errorf("batch %d at 0.5 emails/s, want one per connection (%d)", got, c.Workers)
	}
}
