package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/services/mailer"
)

// mailerDurable is the mailer's durable consumer on MAIL. MAIL keeps limits
// retention (acked jobs stay until their max age), so what is still to send
// is the consumer's pending and unacknowledged messages, not the stream's.
const mailerDurable = "mailer"

// mailBacklog returns the jobs on MAIL the mailer has not settled yet: not
// delivered to it, or delivered and not acknowledged.
func mailBacklog(ctx context.Context, js jetstream.JetStream) (int, error) {
	c, err := js.Consumer(ctx, events.StreamMail, mailerDurable)
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int(info.NumPending) + info.NumAckPending, nil
}

// waitMailBacklog polls until the mailer's backlog is want, or it has not
// moved for stallAfter.
func waitMailBacklog(ctx context.Context, js jetstream.JetStream, want int) error {
	last, lastChange := -1, time.Now()
	for {
		n, err := mailBacklog(ctx, js)
		switch {
		case err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound):
			return fmt.Errorf("mailer backlog: %w", err)
		case err == nil && n == want:
			return nil
		case n != last:
			last, lastChange = n, time.Now()
		case time.Since(lastChange) > stallAfter:
			return fmt.Errorf("mailer backlog stuck at %d jobs, want %d", n, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// publishJobs puts jobs on MAIL as the notification service does: atomic
// batches of envelopes, each with its id as Nats-Msg-Id.
func publishJobs(ctx context.Context, b *bus.Bus, jobs []events.MailJob) error {
	msgs := make([]*nats.Msg, 0, len(jobs))
	for _, job := range jobs {
		env, err := events.NewWithID(job.ID, "plenary/bench", events.MailSend, job.RegistrationID, job)
		if err != nil {
			return err
		}
		m, err := bus.EnvelopeMsg(env)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	return b.PublishBatch(ctx, msgs)
}

// mailWrites are the mailer's own counters (mailer_* metrics), or the
// difference between two readings of them.
type mailWrites struct {
	sent, dials float64
	// Sums and counts of the mailer's histograms: the time each email
	// spent from MAIL FROM to the 250, waiting for a slot in the sent
	// ledger's window before its final dot, and between the 250 and its
	// record. A wait near the send time means the ledger sets the pace.
	sendSum, sendCount, waitSum, waitCount, recordSum, recordCount float64
	// writes are mailer_durable_writes_total by kind. The sent ledger's
	// kinds begin with "ledger" (ledger_insert: one InsertMany; ledger_batch:
	// one stored batch on a stream), whatever it is written to.
	writes map[string]float64
}

// perEmail returns the durable writes per email sent: to the sent ledger,
// status publishes, acks, and all kinds together.
func (w mailWrites) perEmail() (ledger, status, acks, total float64) {
	if w.sent == 0 {
		return 0, 0, 0, 0
	}
	for kind, n := range w.writes {
		switch {
		case strings.HasPrefix(kind, "ledger"):
			ledger += n
		case kind == "status_publish":
			status += n
		case kind == "ack":
			acks += n
		}
		total += n
	}
	return ledger / w.sent, status / w.sent, acks / w.sent, total / w.sent
}

// means returns the mean send, ledger-slot wait and record window per
// email.
func (w mailWrites) means() (send, wait, record time.Duration) {
	mean := func(sum, count float64) time.Duration {
		if count == 0 {
			return 0
		}
		return time.Duration(sum / count * float64(time.Second))
	}
	return mean(w.sendSum, w.sendCount), mean(w.waitSum, w.waitCount), mean(w.recordSum, w.recordCount)
}

func (w mailWrites) minus(o mailWrites) mailWrites {
	d := mailWrites{
		sent: w.sent - o.sent, dials: w.dials - o.dials, writes: map[string]float64{},
		sendSum: w.sendSum - o.sendSum, sendCount: w.sendCount - o.sendCount,
		waitSum: w.waitSum - o.waitSum, waitCount: w.waitCount - o.waitCount,
		recordSum: w.recordSum - o.recordSum, recordCount: w.recordCount - o.recordCount,
	}
	for kind, n := range w.writes {
		d.writes[kind] = n - o.writes[kind]
	}
	return d
}

// mailerCounters reads the mailer's metrics through the stack's listener.
func mailerCounters(ctx context.Context, s *Stack) (mailWrites, error) {
	m, err := scrapeMetrics(ctx, s.URL+"/metrics/"+Mailer)
	if err != nil {
		return mailWrites{}, err
	}
	w := mailWrites{
		sent: m[`mailer_jobs_total{outcome="sent"}`], dials: m["mailer_smtp_dials_total"], writes: map[string]float64{},
		sendSum: m["mailer_smtp_send_seconds_sum"], sendCount: m["mailer_smtp_send_seconds_count"],
		waitSum: m["mailer_window_wait_seconds_sum"], waitCount: m["mailer_window_wait_seconds_count"],
		recordSum: m["mailer_record_window_seconds_sum"], recordCount: m["mailer_record_window_seconds_count"],
	}
	const prefix = `mailer_durable_writes_total{kind="`
	for series, v := range m {
		if kind, ok := strings.CutPrefix(series, prefix); ok {
			w.writes[strings.TrimSuffix(kind, `"}`)] = v
		}
	}
	return w, nil
}

// scrapeMetrics reads a Prometheus text exposition into series → value.
func scrapeMetrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics %s: %d", url, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// mailerConfig is the mailer's configuration as the stack gives it to the
// mailer (the environment, the bench's sink): the bare go-mail measures
// dial with the same TLS policy, HELO, timeout and From.
func (b *bench) mailerConfig() (mailer.Config, error) {
	cfg, err := mailer.LoadConfig()
	cfg.SMTP.Addr = b.sink.Addr
	return cfg, err
}

// setEnv sets the environment variables in vars and returns a function that
// puts back what was there. The stack configures each service from the
// environment when it starts it (LoadConfig), so a service restarted after
// setEnv runs with vars.
func setEnv(vars map[string]string) (restore func()) {
	type old struct {
		value string
		set   bool
	}
	saved := map[string]old{}
	for k, v := range vars {
		value, set := os.LookupEnv(k)
		saved[k] = old{value, set}
		_ = os.Setenv(k, v)
	}
	return func() {
		for k, o := range saved {
			if o.set {
				_ = os.Setenv(k, o.value)
			} else {
				_ = os.Unsetenv(k)
			}
		}
	}
}

// restart stops a service of the stack, starts it again (with the
// environment as it is now) and waits until it is ready.
func restart(ctx context.Context, s *Stack, name string) error {
	if err := s.Stop(name); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return startReady(ctx, s, name)
}

// startReady starts a stopped service and waits until it is ready.
func startReady(ctx context.Context, s *Stack, name string) error {
	if err := s.Start(name); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.ready(ctx, name)
		if err == nil {
			return nil
		}
		if errors.Is(err, errExited) || time.Now().After(deadline) {
			return fmt.Errorf("%s not ready: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
