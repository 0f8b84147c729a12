package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/services/mailer"
)

var benchDrainProfile = flag.String("bench-drain-cpuprofile", "",
	"write a CPU profile of the mailer drain alone (mailer started to last email) to this file")

// minDrain is the fewest emails the drain sends: fewer are over before the
// connections reach their pace.
const minDrain = 2000

// drainResult is how fast the mailer empties a full queue, beside bare
// go-mail sending the same emails over as many connections.
type drainResult struct {
	kind    string // the kind of email copied
	workers int    // MAILER_WORKERS: the mailer's connections, and bare go-mail's
	queued  int
	emails  span // the first email to each drain address
	extra   int  // emails to the drain addresses beyond one each

	startToLast  time.Duration // mailer started → last email
	perSec       float64       // (n − 1) / (first → last)
	bare         float64       // mailer.BareSendRate, same jobs, connections and sink
	writes       mailWrites    // the mailer's counters over the drain
	cpu, bareCPU float64       // the process's CPU seconds per email: the drain's, bare go-mail's
	sinkConns    int           // connections the sink saw opened during the drain
}

// mailerDrain measures the mailer alone. With the mailer stopped it queues
// n copies of a real mail job on MAIL, starts the mailer and times the
// emails at the sink, first to last. Then bare go-mail sends the same jobs,
// composed as the mailer composes them, over as many connections into the
// same sink (mailer.BareSendRate): the raw limit the drain is compared with.
func (b *bench) mailerDrain(ctx context.Context, s *Stack, pub *bus.Bus, tmpl events.MailJob) (drainResult, error) {
	n := max(b.n, minDrain)
	res := drainResult{kind: tmpl.Kind}
	cfg, err := b.mailerConfig()
	if err != nil {
		return res, err
	}
	res.workers = cfg.Workers
	copyOf := func(prefix string) func(i int) events.MailJob {
		return func(i int) events.MailJob {
			job := tmpl
			job.ID, job.To, job.RegistrationID = fmt.Sprintf("%s.%d", prefix, i), fmt.Sprintf("%s-%d@example.org", prefix, i), ""
			return job
		}
	}
	// Everything queued before is settled first: the backlog is then the
	// drain's jobs alone.
	if err := waitMailBacklog(ctx, pub.JS, 0); err != nil {
		return res, err
	}
	if err := s.Stop(Mailer); err != nil {
		return res, err
	}
	jobs := make([]events.MailJob, n)
	want := make(map[string]int, n)
	for i := range jobs {
		jobs[i] = copyOf("drain")(i)
		want[jobs[i].To] = 1
	}
	if err := publishJobs(ctx, pub, jobs); err != nil {
		return res, err
	}
	if err := waitMailBacklog(ctx, pub.JS, n); err != nil {
		return res, err
	}
	res.queued = n

	arrived := b.track(want)
	conns := b.sink.Connections()
	stopProfile := startPartProfile(b, "mailer drain", *benchDrainProfile)
	before := readUsage()
	start := time.Now()
	if err := startReady(ctx, s, Mailer); err != nil {
		return res, err
	}
	waitFor(ctx, func() (int, int) { return arrived(), n })
	res.cpu = (readUsage().cpu - before.cpu) / float64(n)
	stopProfile()
	if err := waitMailBacklog(ctx, pub.JS, 0); err != nil {
		return res, err
	}
	// The counters start at zero with the mailer: they are the drain's.
	if res.writes, err = mailerCounters(ctx, s); err != nil {
		return res, err
	}
	res.sinkConns = b.sink.Connections() - conns
	res.emails, res.extra = b.nthArrivals(want, 0)
	res.startToLast = sinceIfAfter(res.emails.last, start)
	res.perSec = res.emails.rate()

	before = readUsage()
	res.bare, err = mailer.BareSendRate(ctx, cfg.SMTP, cfg.Workers, n, copyOf("bare"))
	if err != nil {
		return res, fmt.Errorf("bare go-mail: %w", err)
	}
	res.bareCPU = (readUsage().cpu - before.cpu) / float64(n)
	return res, nil
}

// nthArrivals returns when the k-th email (from 0) to each address in want
// arrived, and how many emails beyond want arrived to them.
func (b *bench) nthArrivals(want map[string]int, k int) (span, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	at := make([]time.Time, 0, len(want))
	extra := 0
	for addr, n := range want {
		got := b.arrived[addr]
		if len(got) > k {
			at = append(at, got[k])
		}
		extra += max(0, len(got)-n)
	}
	return spanOf(at), extra
}
