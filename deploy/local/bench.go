package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/embedded"
)

// The bench's own flags live with the bench rather than in main.
var (
	benchJSON = flag.String("bench-json", filepath.Join(".data", "bench.json"), "where --bench writes its table as JSON")

	benchRushProfile = flag.String("bench-rush-cpuprofile", "",
		"write a CPU profile of the whole-system rush alone to this file")
	benchCoreProfile = flag.String("bench-core-cpuprofile", "",
		"write a CPU profile of the core-alone rush (notification paused) to this file")
	benchCoreAllocs = flag.String("bench-core-allocprofile", "",
		"write the allocations of the core-alone rush and open loop to this file, and of everything before them to FILE.base (go tool pprof -base)")
	benchCoreOnly = flag.Bool("bench-core-only", false,
		"run only the raw limits and the core alone (its rush and open loop), and print no table: for trying a change to the core quickly")
)

// bench drives the whole system in this process and prints one table:
// what Plenary achieves next to the raw limits of the same infrastructure,
// measured in the same run on the same servers. It measures the system only
// from outside: HTTP requests, NATS subjects and the SMTP sink, so that it
// keeps working whatever the services do inside.
type bench struct {
	n, workers int
	out        io.Writer
	log        *slog.Logger

	natsURL, mongoURI string
	sink              *embedded.SMTPServer

	mu      sync.Mutex
	arrived map[string][]time.Time // recipient → when the sink accepted each email to it
	byID    map[string]int         // Message-ID → emails that arrived with it
	repeats int                    // emails that arrived with a Message-ID seen before
	// tracked is the set of addresses a wait is counting emails to (address
	// → emails wanted), trackedGot the emails counted (see track).
	tracked    map[string]int
	trackedGot int
}

func runBench(ctx context.Context, n, workers int, out io.Writer, log *slog.Logger) error {
	dir, err := os.MkdirTemp("", "plenary-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{n: n, workers: workers, out: out, log: log, arrived: map[string][]time.Time{}, byID: map[string]int{}}

	ns, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	fdb, err := embedded.StartFerretDB(filepath.Join(dir, "ferretdb"), "127.0.0.1:0", nil)
	if err != nil {
		return err
	}
	defer fdb.Stop()
	b.sink, err = embedded.StartSMTP("127.0.0.1:0", b.received)
	if err != nil {
		return err
	}
	defer b.sink.Close()
	b.natsURL, b.mongoURI = ns.ClientURL(), fdb.URI
	// The services, the bare clients of the raw limits and the watcher all
	// reach NATS in memory, as in make run.
	defer bus.RegisterInProcess(b.natsURL, ns)()

	fmt.Fprintf(out, "plenary bench: %d registrations, %d concurrent clients\n", n, workers)
	raw, err := b.rawLimits(ctx)
	if err != nil {
		return err
	}
	sys, err := b.system(ctx, dir)
	if err != nil {
		return err
	}
	if *benchCoreOnly {
		fmt.Fprintf(out, "  core alone: ratio %.3f to JetStream publish, sync, %d publishers (%.0f/s); HTTP p50 %s, p99 %s; request → decision p99 %s\n",
			sys.core.acceptedPerSec/raw.publish, workers, raw.publish, fmtMS(sys.core.http.p50), fmtMS(sys.core.http.p99), fmtMS(sys.core.toDecision.p99))
		return nil
	}
	rep := newReport(b, raw, sys)
	rep.print(out)
	if err := rep.writeJSON(*benchJSON); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nwritten to %s\n", *benchJSON)
	if !rep.correct() {
		return errors.New("bench: correctness checks failed (see the table)")
	}
	return nil
}

// systemResult is what the running system achieved.
type systemResult struct {
	rush     rushResult
	core     rushResult // the same rush with the notification service paused
	coreOpen openResult // and the open loop at half its accept rate
	open     openResult
	drain    drainResult
	fanout   fanoutResult
	usage    usage
	// Emails that arrived at the sink with a Message-ID seen before, over
	// the whole run: each one an email delivered twice.
	repeatedEmails int

	// Outcome messages seen on core NATS over the whole run, and stored in
	// their stream: they differ if the stream refused some that were seen.
	outcomesSeen, outcomesStored int
}

// system starts the four services on the bench's servers and runs the
// rush, the open loop, the mailer drain, the agenda-change fan-out and the
// core alone against them, in that order, each after the previous one has
// settled.
func (b *bench) system(ctx context.Context, dir string) (systemResult, error) {
	var res systemResult
	s, stop, err := b.startStack(ctx, dir)
	if err != nil {
		return res, err
	}
	defer stop()
	w, err := watch(b.natsURL)
	if err != nil {
		return res, err
	}
	defer w.close()
	pub, err := bus.Connect(ctx, b.natsURL, "plenary-bench", 10*time.Second, b.log)
	if err != nil {
		return res, err
	}
	defer pub.Close()
	for _, slug := range []string{"rush", "open", "core", "core-open"} {
		if err := createEvent(ctx, s, slug); err != nil {
			return res, err
		}
	}

	if *benchCoreOnly {
		return b.coreAlone(ctx, s, w, res)
	}
	before := readUsage()
	stopProfile := startPartProfile(b, "rush", *benchRushProfile)
	res.rush = b.rush(ctx, s, w, "rush", true)
	stopProfile()
	res.rush.cpu = readUsage().cpu - before.cpu
	fmt.Fprintf(b.out, "  rush: %d accepted at %.0f/s, %d decided, %d emails\n",
		res.rush.accepted, res.rush.acceptedPerSec, res.rush.decided, res.rush.emails)

	if res.rush.acceptedPerSec > 0 {
		res.open = b.openLoop(ctx, s, w, "open", res.rush.acceptedPerSec/2, openLoopFor, true)
		fmt.Fprintf(b.out, "  open loop: %d requests at %.0f/s, HTTP p99 %s\n",
			res.open.sent, res.open.rate, fmtMS(res.open.http.p99))
	}

	res.drain, err = b.mailerDrain(ctx, s, pub, w.mailTemplate())
	if err != nil {
		return res, fmt.Errorf("mailer drain: %w", err)
	}
	fmt.Fprintf(b.out, "  mailer drain: %d copies of a %s email at %.0f/s over %d connections; bare go-mail %.0f/s\n",
		res.drain.emails.n, res.drain.kind, res.drain.perSec, res.drain.workers, res.drain.bare)
	res.fanout, err = b.fanOut(ctx, s, pub)
	if err != nil {
		return res, fmt.Errorf("fan-out: %w", err)
	}
	fmt.Fprintf(b.out, "  fan-out: %d agenda-change emails, first → last %.2f s (%.0f/s); bare go-mail %.0f/s over %d connections\n",
		res.fanout.emails.n, res.fanout.emails.took().Seconds(), res.fanout.emails.rate(), res.fanout.bare, res.fanout.workers)
	if res, err = b.coreAlone(ctx, s, w, res); err != nil {
		return res, err
	}
	res.outcomesSeen = w.seenOutcomes()
	if res.outcomesStored, err = w.storedOutcomes(ctx); err != nil {
		return res, fmt.Errorf("outcomes stored: %w", err)
	}
	res.usage = readUsage()
	res.repeatedEmails = b.repeatedEmails()
	return res, nil
}

// coreAlone runs the registration core alone: the same rush again with the
// notification service paused, so no email work (one claim, one job, one
// send, one sent record and statuses per email, each a durable write)
// shares the disk and the two cores with accepting and deciding; then the
// open loop at half the rate it reached.
func (b *bench) coreAlone(ctx context.Context, s *Stack, w *watcher, res systemResult) (systemResult, error) {
	if err := s.Stop(Notification); err != nil {
		return res, fmt.Errorf("pause notification: %w", err)
	}
	stopAllocs := startPartAllocs(b, "core alone", *benchCoreAllocs)
	defer stopAllocs()
	stopProfile := startPartProfile(b, "core alone", *benchCoreProfile)
	res.core = b.rush(ctx, s, w, "core", false)
	stopProfile()
	fmt.Fprintf(b.out, "  core alone: %d accepted at %.0f/s, %d decided at %.0f/s\n",
		res.core.accepted, res.core.acceptedPerSec, res.core.decided, res.core.decisionsPerSec)
	if res.core.acceptedPerSec > 0 {
		res.coreOpen = b.openLoop(ctx, s, w, "core-open", res.core.acceptedPerSec/2, openLoopFor, false)
		fmt.Fprintf(b.out, "  core alone, open loop: %d requests at %.0f/s, HTTP p99 %s\n",
			res.coreOpen.sent, res.coreOpen.rate, fmtMS(res.coreOpen.http.p99))
	}
	return res, nil
}

// startStack runs the four services in this process against the bench's
// NATS, FerretDB and SMTP sink, and returns a function that stops them.
func (b *bench) startStack(ctx context.Context, dir string) (*Stack, func(), error) {
	started := make(chan *Stack, 1)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			DataDir: filepath.Join(dir, "stack"), Addr: "127.0.0.1:0",
			NATSURL: b.natsURL, MongoURI: b.mongoURI, SMTPAddr: b.sink.Addr,
			Unthrottled: true, Log: b.log, Started: func(s *Stack) { started <- s },
		})
	}()
	select {
	case s := <-started:
		return s, func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		return nil, nil, fmt.Errorf("stack: %w", err)
	}
}

// inPersonSeats is the rush event's in-person capacity: small, so that the
// rush fills it and the waitlist takes the rest.
const inPersonSeats = 60

// createEvent creates an event with inPersonSeats seats in person, online
// unlimited, and a waitlist.
func createEvent(ctx context.Context, s *Stack, slug string) error {
	status, body, err := s.call(ctx, http.MethodPost, "/admin/events", map[string]any{
		"slug": slug, "title": "Bench " + slug, "timezone": "Europe/Vienna",
		"starts_at":    time.Now().Add(48 * time.Hour).Format(time.RFC3339),
		"ends_at":      time.Now().Add(72 * time.Hour).Format(time.RFC3339),
		"capacity":     map[string]any{"in_person": inPersonSeats, "online": 0},
		"registration": map[string]any{"waitlist": true},
	})
	if err != nil || status != http.StatusCreated {
		return fmt.Errorf("create event %s: %d %s %v", slug, status, body, err)
	}
	return nil
}

// parallel runs op for i in [0, n) on workers goroutines and returns how
// long they took. Workers take the indices in increasing order. It stops
// early at the first error.
func parallel(n, workers int, op func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || firstErr.Load() != nil {
					return
				}
				if err := op(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return time.Since(start), nil
}

// stallAfter is how long waitFor waits without progress before it gives
// up: what has not arrived by then counts as lost.
const stallAfter = 30 * time.Second

// waitFor polls progress until got reaches want, or until got has not
// grown for stallAfter, or ctx ends. It returns the last got.
func waitFor(ctx context.Context, progress func() (got, want int)) int {
	return waitStalling(ctx, stallAfter, progress)
}

// waitStalling is waitFor with its own limit on a wait without progress.
func waitStalling(ctx context.Context, stall time.Duration, progress func() (got, want int)) int {
	last, lastChange := -1, time.Now()
	for {
		got, want := progress()
		if got >= want {
			return got
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		if time.Since(lastChange) > stall {
			return got
		}
		select {
		case <-ctx.Done():
			return got
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
