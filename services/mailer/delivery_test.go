package mailer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestStopAndRestartLosesNothing(t *testing.T) {
	h := newHarness(t)
	h.cfg.Workers = 4
	h.smtp.SetDelay(2 * time.Millisecond)
	ids := h.queue(1000)

	stop := h.start()
	waitArrivals(t, h, 200)
	stop()
	sentBefore := len(h.smtp.Messages(t))
	if sentBefore >= len(ids) {
		t.Fatalf("all %d emails went out before the stop; the test proves nothing", sentBefore)
	}

	restartAndCountDuplicates(t, h, ids, "stopped", sentBefore)
}

// restartAndCountDuplicates starts a mailer again after the first one
// stopped (how says how) once sentBefore emails were out, waits for every
// job and for the queue to be done (a late redelivery would show then),
// and fails if more emails arrived twice than there are connections.
func restartAndCountDuplicates(t *testing.T, h *harness, ids []string, how string, sentBefore int) {
	t.Helper()
	h.start()
	testkit.Eventually(t, 60*time.Second, func() error {
		if n := len(h.arrivals()); n < len(ids) {
			return fmt.Errorf("%d of %d jobs arrived", n, len(ids))
		}
		return nil
	})
	testkit.WaitIdle(t, h.bus.JS, events.StreamMail, "mailer")
	dups := h.duplicates(ids)
	t.Logf("%s after %d of %d emails; duplicates after the restart: %d (bound: %d connections)", how, sentBefore, len(ids), dups, h.cfg.Workers)
	if dups > h.cfg.Workers {
		t.Errorf("%d duplicates: more than the %d connections in flight", dups, h.cfg.Workers)
	}
}

// childEnv, when set, makes the test binary run the mailer from the
// environment until it is killed (see TestCrashMidQueue).
const childEnv = "PLENARY_MAILER_TEST_CHILD"

func runChild() {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := LoadConfig()
	if err == nil {
		err = Run(ctx, cfg, log)
	}
	if err != nil {
		log.Error("mailer child", "err", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestCrashMidQueue kills a mailer process (SIGKILL: no batch finished, no
// record written after it) in the middle of 1,000 emails and lets another
// one take over: every email arrives, and only the emails sent but not yet
// recorded at the kill — at most one per connection — arrive twice.
func TestCrashMidQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mailer process")
	}
	h := newHarness(t)
	h.cfg.Workers = 4
	// AckWait is 2×SMTP_TIMEOUT: what the killed process held comes back
	// after 4 s.
	h.cfg.SMTP.Timeout = 2 * time.Second
	h.smtp.SetDelay(2 * time.Millisecond)
	ids := h.queue(1000)

	child, stderr := startChild(t, h)
	waitArrivals(t, h, 300)
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	sentBefore := len(h.smtp.Messages(t))
	if sentBefore >= len(ids) {
		t.Fatalf("all %d emails went out before the kill; the test proves nothing", sentBefore)
	}
	if stderr.Len() > 0 {
		t.Logf("killed mailer's log:\n%s", stderr.String())
	}

	restartAndCountDuplicates(t, h, ids, "killed", sentBefore)
	statuses := h.statuses()
	for _, id := range ids {
		if got := statuses[id]; len(got) == 0 || got[len(got)-1] != events.MailSent {
			t.Errorf("job %s statuses %v, want sent last", id, got)
			break
		}
	}
}

// startChild starts a mailer process with h's configuration (SMTP_TIMEOUT
// 2 s), killed when t ends at the latest. Its log is in stderr.
func startChild(t *testing.T, h *harness) (child *exec.Cmd, stderr *strings.Builder) {
	t.Helper()
	child = exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1",
		"MONGODB_URI="+h.cfg.MongoURI, "MONGODB_DATABASE="+h.cfg.MongoDatabase, "NATS_URL="+h.cfg.NATSURL,
		"HTTP_ADDR=127.0.0.1:0", "SMTP_ADDR="+h.cfg.SMTP.Addr, "SMTP_TLS=none", "SMTP_TIMEOUT=2s",
		"SMTP_FROM="+h.cfg.SMTP.From, "MAILER_WORKERS="+strconv.Itoa(h.cfg.Workers),
		"MAILER_MAX_DELIVER=5", "MAILER_RETRY_BASE=10ms", "MAILER_RETRY_MAX=50ms")
	stderr = &strings.Builder{}
	child.Stderr = stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	return child, stderr
}

// waitArrivals waits, polling closely, until at least n emails arrived.
func waitArrivals(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(h.smtp.Messages(t)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d emails after 30 s", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestThousandEmailsOpenAtMostNConnections(t *testing.T) {
	h := newHarness(t)
	h.cfg.Workers = 4
	ids := h.queue(1000)
	h.start()
	h.smtp.WaitFor(t, len(ids), 60*time.Second)
	if d := h.duplicates(ids); d != 0 {
		t.Errorf("%d duplicates", d)
	}
	if c := h.smtp.Connections(); c > h.cfg.Workers {
		t.Errorf("%d SMTP connections for 1,000 emails, want at most %d", c, h.cfg.Workers)
	}
}

func TestRateLimitHolds(t *testing.T) {
	h := newHarness(t)
	h.cfg.Workers = 4
	h.cfg.RateLimit = 200
	ids := h.queue(1000)
	h.start()
	msgs := h.smtp.WaitFor(t, len(ids), 60*time.Second)

	at := make([]time.Time, len(msgs))
	for i, m := range msgs {
		at[i] = m.Envelope.At
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	// 1,000 emails at 200/s: 999 intervals of 5 ms between the first and
	// the last.
	want := time.Duration(len(at)-1) * time.Second / 200
	got := at[len(at)-1].Sub(at[0])
	t.Logf("1,000 emails at 200/s: first to last %s, want %s", got, want)
	if diff := got - want; diff < -want/20 || diff > want/20 {
		t.Errorf("first to last %s, want %s ± 5%%", got, want)
	}
	// And no burst: no second of the run holds more than 5% over the rate.
	for i, j := 0, 0; i < len(at); i++ {
		for at[i].Sub(at[j]) >= time.Second {
			j++
		}
		if n := i - j + 1; n > 210 {
			t.Fatalf("%d emails within one second at a limit of 200/s", n)
		}
	}
}

// TestSlowBatchStaysWithItsReplica: a batch that takes three times AckWait
// to send is not given to a second replica meanwhile (ConsumeBatch keeps its
// messages in progress), so no email goes out twice.
func TestSlowBatchStaysWithItsReplica(t *testing.T) {
	h := newHarness(t)
	h.cfg.Workers = 1
	h.cfg.SMTP.Timeout = time.Second // AckWait 2 s
	h.smtp.SetDelay(200 * time.Millisecond)
	ids := h.queue(30) // 6 s of sending on one connection
	h.start()
	h.start()
	h.smtp.WaitFor(t, len(ids), 30*time.Second)
	testkit.WaitIdle(t, h.bus.JS, events.StreamMail, "mailer")
	if d := h.duplicates(ids); d != 0 {
		t.Errorf("%d emails sent twice: a slow batch was redelivered to the other replica", d)
	}
}

// TestDeadLetterOfAJobPublishedInABatch: notification publishes jobs as
// atomic batches, so a stored job carries Nats-Batch-* headers.
func TestDeadLetterOfAJobPublishedInABatch(t *testing.T) {
	h := newHarness(t)
	h.smtp.FailPermanently(true)
	h.start()
	ids := h.queue(2)
	for _, id := range ids {
		h.waitStatus(id, events.MailFailed)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := h.deadLetters(); n != 2 {
			return fmt.Errorf("DLQ holds %d messages, want 2", n)
		}
		return nil
	})
	testkit.WaitIdle(t, h.bus.JS, events.StreamMail, "mailer")
	if a := h.smtp.Attempts(); a != 2 {
		t.Errorf("%d attempts for 2 permanently failing jobs, want 2", a)
	}
}

func TestRedeliveredSentJobIsNotSentAgain(t *testing.T) {
	h := newHarness(t)
	stop := h.start()
	ids := h.queue(2)
	h.smtp.WaitFor(t, 2, 10*time.Second)
	h.waitStatus(ids[0], events.MailSent)
	h.waitStatus(ids[1], events.MailSent)
	stop()

	// Replay the jobs as a redelivery would: attempt 2, in one batch with a
	// new job, and a job never sent but redelivered (its first attempt
	// failed).
	deps, err := service.Start(context.Background(), "mailer-test", h.cfg.Common, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer deps.Close()
	m, err := newMailer(context.Background(), deps, h.cfg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	delivery := func(i, attempt int) bus.Delivery {
		env, _ := events.NewWithID(testJob(i).ID, "test", events.MailSend, "reg", testJob(i))
		return bus.Delivery{Envelope: env, Attempt: attempt}
	}
	errs := m.handleBatch(context.Background(), []bus.Delivery{delivery(0, 2), delivery(1, 3), delivery(2, 1), delivery(3, 2)})
	for i, err := range errs {
		if err != nil {
			t.Errorf("delivery %d: %v", i, err)
		}
	}
	seen := h.arrivals()
	for i, want := range []int{1, 1, 1, 1} {
		if got := seen[testJob(i).Subject]; got != want {
			t.Errorf("job %d arrived %d times, want %d", i, got, want)
		}
	}
	if a := h.smtp.Attempts(); a != 4 {
		t.Errorf("%d SMTP attempts, want 4: a recorded job was sent again", a)
	}
	// The records are on MAIL_SENT: the mailer writes nothing to MongoDB.
	if names, err := deps.DB.ListCollectionNames(context.Background(), bson.D{}); err != nil || len(names) > 0 {
		t.Errorf("mailer database holds collections %v (%v), want none", names, err)
	}
}
