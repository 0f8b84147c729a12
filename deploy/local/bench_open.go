package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/events"
)

// openLoopFor is how long the open loop sends.
const openLoopFor = 8 * time.Second

// openLoopTarget is the HTTP p99 the open loop should stay under (DESIGN §9).
const openLoopTarget = 50 * time.Millisecond

// openResult is what a fixed arrival rate got.
type openResult struct {
	rate    float64   // the arrival rate asked for
	offered float64   // the arrival rate achieved: first → last request sent
	http    latencies // from each request's scheduled time

	sent, accepted, refused, failed int
	decided, emails, wanted         int // wanted: one decision and one email per accepted request
}

// openLoop sends registrations for the event at slug at a fixed rate for d,
// each on its own goroutine, whether or not earlier ones were answered: a
// closed loop slows down with the server and hides its queueing, an open
// loop does not. Latency counts from when a request was due, so that a late
// send counts against the system rather than vanishing (no coordinated
// omission). It then waits for the decisions and emails, so that the next
// measure starts on a quiet system.
func (b *bench) openLoop(ctx context.Context, s *Stack, w *watcher, slug string, rate float64, d time.Duration, emails bool) openResult {
	res := openResult{rate: rate, sent: max(1, int(rate*d.Seconds()))}
	interval := time.Duration(float64(time.Second) / rate)
	client := newHTTPClient(256)
	url := s.URL + "/api/events/" + slug + "/registrations"
	reqs := make([]request, res.sent)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range reqs {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
				return res
			case <-time.After(wait):
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			email := fmt.Sprintf("%s-%d@example.org", slug, i)
			r := request{email: email, mode: modeOf(i), sentAt: due}
			r.status, _ = postRegistration(client, url, email, r.mode)
			r.took = time.Since(due)
			reqs[i] = r
		}()
	}
	res.offered = perSecond(res.sent-1, time.Since(start))
	wg.Wait()

	took := make([]time.Duration, len(reqs))
	for i, r := range reqs {
		took[i] = r.took
		switch {
		case r.status == 0:
			res.failed++
		case !r.accepted():
			res.refused++
		default:
			res.accepted++
		}
	}
	res.http = percentiles(took)
	want := acceptedByEmail(reqs)
	res.wanted = sum(want)
	res.decided = waitFor(ctx, func() (int, int) { return w.decided(want), res.wanted })
	if emails {
		res.emails = waitFor(ctx, func() (int, int) { return b.emailsArrived(want), res.wanted })
	}
	return res
}

// drainResult is how fast the mailer empties a full queue.
type drainResult struct {
	kind           string // the kind of email copied
	emails, queued int
	took           time.Duration
	perSec         float64
}

// mailerDrain measures the mailer alone: with the mailer stopped it queues
// b.n copies of a real mail job on mail.v1.send, then starts the mailer and
// times until the last email reaches the sink.
func (b *bench) mailerDrain(ctx context.Context, s *Stack, tmpl events.MailJob) (drainResult, error) {
	res := drainResult{kind: tmpl.Kind}
	if err := s.Stop(Mailer); err != nil {
		return res, err
	}
	nc, err := nats.Connect(b.natsURL)
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	want := map[string]int{}
	_, err = parallel(b.n, b.workers, func(i int) error {
		job := tmpl
		job.ID, job.To, job.RegistrationID = fmt.Sprintf("bench-drain-%d", i), fmt.Sprintf("drain-%d@example.org", i), ""
		env, err := events.NewWithID(job.ID, "plenary/bench", events.MailSend, "", job)
		if err != nil {
			return err
		}
		body, err := env.Marshal()
		if err != nil {
			return err
		}
		_, err = js.Publish(ctx, events.MailSend, body, jetstream.WithMsgID(job.ID))
		return err
	})
	if err != nil {
		return res, err
	}
	for i := range b.n {
		want[fmt.Sprintf("drain-%d@example.org", i)] = 1
	}
	res.queued = waitFor(ctx, func() (int, int) { return queued(ctx, js), b.n })

	start := time.Now()
	if err := s.Start(Mailer); err != nil {
		return res, err
	}
	res.emails = waitFor(ctx, func() (int, int) { return b.emailsArrived(want), b.n })
	var last time.Time
	for email := range want {
		for _, at := range b.emailsTo(email) {
			last = later(last, at)
		}
	}
	res.took = sinceIfAfter(last, start)
	res.perSec = perSecond(res.emails, res.took)
	return res, nil
}

// queued returns how many jobs the MAIL work queue holds.
func queued(ctx context.Context, js jetstream.JetStream) int {
	st, err := js.Stream(ctx, events.StreamMail)
	if err != nil {
		return 0
	}
	return int(st.CachedInfo().State.Msgs)
}
