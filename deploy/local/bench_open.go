package main

import (
	"context"
	"fmt"
	"sync"
	"time"
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
		arrived := b.track(want)
		res.emails = waitFor(ctx, func() (int, int) { return arrived(), res.wanted })
	}
	return res
}
