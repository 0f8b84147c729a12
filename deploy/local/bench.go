package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/wneessen/go-mail"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/embedded"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// bench drives the whole system in this process and prints one table:
// what Plenary achieves next to the raw limits of the same infrastructure,
// measured in the same run. It uses its own temporary data directory.
type bench struct {
	n, workers int
	out        io.Writer
	log        *slog.Logger

	natsURL, mongoURI string
	sink              *embedded.SMTPServer

	mu      sync.Mutex
	arrived map[string]time.Time // recipient → when the sink accepted its email
}

func runBench(ctx context.Context, n, workers int, out io.Writer, log *slog.Logger) error {
	dir, err := os.MkdirTemp("", "plenary-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{n: n, workers: workers, out: out, log: log, arrived: map[string]time.Time{}}

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
	b.sink, err = embedded.StartSMTP("127.0.0.1:0", func(m embedded.Message) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, to := range m.To {
			b.arrived[to] = m.At
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer b.sink.Close()
	b.natsURL, b.mongoURI = ns.ClientURL(), fdb.URI

	fmt.Fprintf(out, "plenary bench: %d operations per measure, %d concurrent clients\n\n", n, workers)
	rawMongo, err := b.rawMongo(ctx)
	if err != nil {
		return fmt.Errorf("raw mongo: %w", err)
	}
	rawNATS, err := b.rawNATS(ctx)
	if err != nil {
		return fmt.Errorf("raw nats: %w", err)
	}
	rawSMTP, err := b.rawSMTP(ctx)
	if err != nil {
		return fmt.Errorf("raw smtp: %w", err)
	}
	sys, err := b.system(ctx, dir)
	if err != nil {
		return err
	}
	b.report(rawMongo, rawNATS, rawSMTP, sys)
	return nil
}

// parallel runs op n times on the bench's workers and returns ops per second.
func (b *bench) parallel(op func(i int) error) (float64, error) {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range b.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.n || firstErr.Load() != nil {
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
	return float64(b.n) / time.Since(start).Seconds(), nil
}

// rawMongo: bare single-document inserts of registration-sized documents.
func (b *bench) rawMongo(ctx context.Context) (float64, error) {
	db, err := store.Connect(ctx, b.mongoURI, "bench_raw", 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer store.Disconnect(db)
	coll := db.Collection("docs")
	pad := strings.Repeat("x", 400)
	return b.parallel(func(i int) error {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: strconv.Itoa(i)}, {Key: "pad", Value: pad}})
		return err
	})
}

// rawNATS: bare synchronous JetStream publishes with a Nats-Msg-Id, to a
// file stream on the same fsync-always server.
func (b *bench) rawNATS(ctx context.Context) (float64, error) {
	nc, err := nats.Connect(b.natsURL)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw"}}); err != nil {
		return 0, err
	}
	body := bytes.Repeat([]byte("x"), 800)
	return b.parallel(func(i int) error {
		_, err := js.Publish(ctx, "bench.raw", body, jetstream.WithMsgID(strconv.Itoa(i)))
		return err
	})
}

// rawSMTP: bare go-mail sends to the same sink, one reused connection per
// worker (the mailer's default is 4 workers).
func (b *bench) rawSMTP(ctx context.Context) (float64, error) {
	host, port, _ := strings.Cut(b.sink.Addr, ":")
	p, _ := strconv.Atoi(port)
	const conns = 4
	clients := make(chan *mail.Client, conns)
	for range conns {
		c, err := mail.NewClient(host, mail.WithPort(p), mail.WithTLSPolicy(mail.NoTLS))
		if err != nil {
			return 0, err
		}
		if err := c.DialWithContext(ctx); err != nil {
			return 0, err
		}
		defer c.Close()
		clients <- c
	}
	return b.parallel(func(i int) error {
		m := mail.NewMsg()
		_ = m.From("bench@plenary.localhost")
		_ = m.To(fmt.Sprintf("raw-%d@example.org", i))
		m.Subject("raw")
		m.SetBodyString(mail.TypeTextPlain, strings.Repeat("text ", 200))
		c := <-clients
		defer func() { clients <- c }()
		return c.Send(m)
	})
}

// systemResult is what the running system achieved.
type systemResult struct {
	accepted           float64
	httpP50, httpP99   time.Duration
	emailP50, emailP99 time.Duration
	emailsPerSec       float64
	peakRSSMiB         float64
}

func (b *bench) system(ctx context.Context, dir string) (systemResult, error) {
	started := make(chan *Stack, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			DataDir: filepath.Join(dir, "stack"), Addr: "127.0.0.1:0",
			NATSURL: b.natsURL, MongoURI: b.mongoURI, SMTPAddr: b.sink.Addr,
			Unthrottled: true, Log: b.log, Started: func(s *Stack) { started <- s },
		})
	}()
	var s *Stack
	select {
	case s = <-started:
	case err := <-done:
		return systemResult{}, fmt.Errorf("stack: %w", err)
	}
	defer func() { cancel(); <-done }()

	status, body, err := s.call(ctx, http.MethodPost, "/admin/events", map[string]any{
		"slug": "bench", "title": "Bench", "timezone": "Europe/Vienna",
		"starts_at": time.Now().Add(48 * time.Hour).Format(time.RFC3339),
		"ends_at":   time.Now().Add(72 * time.Hour).Format(time.RFC3339),
		// Seats are limited, as at a real event, so every registration
		// takes the whole path: address hold, seat claim, outbox.
		"capacity": map[string]any{"in_person": 10, "online": 3 * b.n},
	})
	if err != nil || status != http.StatusCreated {
		return systemResult{}, fmt.Errorf("create event: %d %s %v", status, body, err)
	}

	sentAt, latency, accepted, err := b.register(s, "bench")
	if err != nil {
		return systemResult{}, err
	}
	arrived, err := b.waitEmails("bench")
	if err != nil {
		return systemResult{}, err
	}

	// The mailer on its own: queue a batch while it is stopped, then time
	// how fast it drains the queue.
	if err := s.Stop(Mailer); err != nil {
		return systemResult{}, err
	}
	if _, _, _, err := b.register(s, "drain"); err != nil {
		return systemResult{}, err
	}
	if err := b.waitQueued(ctx); err != nil {
		return systemResult{}, err
	}
	drainStart := time.Now()
	if err := s.Start(Mailer); err != nil {
		return systemResult{}, err
	}
	drained, err := b.waitEmails("drain")
	if err != nil {
		return systemResult{}, err
	}
	var lastDrained time.Time
	for _, at := range drained {
		if at.After(lastDrained) {
			lastDrained = at
		}
	}

	res := systemResult{accepted: accepted, peakRSSMiB: peakRSS()}
	res.httpP50, res.httpP99 = percentiles(latency)
	toEmail := make([]time.Duration, b.n)
	for i, at := range arrived {
		toEmail[i] = at.Sub(sentAt[i])
	}
	res.emailP50, res.emailP99 = percentiles(toEmail)
	res.emailsPerSec = float64(b.n) / lastDrained.Sub(drainStart).Seconds()
	return res, nil
}

// register sends b.n registrations with addresses <prefix>-<i>@example.org
// and returns when each was sent, how long each took, and the rate.
func (b *bench) register(s *Stack, prefix string) (sentAt []time.Time, latency []time.Duration, perSec float64, err error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: b.workers}}
	sentAt = make([]time.Time, b.n)
	latency = make([]time.Duration, b.n)
	perSec, err = b.parallel(func(i int) error {
		raw, _ := json.Marshal(map[string]any{
			"name": fmt.Sprintf("Participant %d", i), "email": fmt.Sprintf("%s-%d@example.org", prefix, i),
			"mode": "online", "consent": true,
		})
		sentAt[i] = time.Now()
		resp, err := client.Post(s.URL+"/api/events/bench/registrations", "application/json", bytes.NewReader(raw))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		latency[i] = time.Since(sentAt[i])
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("registration %d: status %d", i, resp.StatusCode)
		}
		return nil
	})
	return sentAt, latency, perSec, err
}

// waitEmails waits for the b.n emails to <prefix>-<i>@example.org and
// returns when each reached the sink.
func (b *bench) waitEmails(prefix string) ([]time.Time, error) {
	deadline := time.Now().Add(time.Duration(b.n)*20*time.Millisecond + time.Minute)
	out := make([]time.Time, b.n)
	for {
		got := 0
		b.mu.Lock()
		for i := range b.n {
			if at, ok := b.arrived[fmt.Sprintf("%s-%d@example.org", prefix, i)]; ok {
				out[i] = at
				got++
			}
		}
		b.mu.Unlock()
		if got == b.n {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d of %d emails arrived", got, b.n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitQueued waits until the MAIL work queue holds b.n jobs.
func (b *bench) waitQueued(ctx context.Context) error {
	nc, err := nats.Connect(b.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Duration(b.n)*20*time.Millisecond + time.Minute)
	for {
		st, err := js.Stream(ctx, events.StreamMail)
		if err != nil {
			return err
		}
		if n := st.CachedInfo().State.Msgs; n >= uint64(b.n) {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d mail jobs queued", n, b.n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*50/100], s[min(len(s)*99/100, len(s)-1)]
}

// peakRSS reads the process's peak resident set size (Linux).
func peakRSS() float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func (b *bench) report(mongo, jsPub, smtp float64, s systemResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintf(b.out, "%-44s %14s   %s\n", "measure", "value", "raw limit of this machine (same run)")
	fmt.Fprintf(b.out, "%-44s %12.0f/s   FerretDB InsertOne %.0f/s · JetStream publish %.0f/s (ratio to the lower: %.2f)\n",
		"registrations accepted", s.accepted, mongo, jsPub, s.accepted/min(mongo, jsPub))
	fmt.Fprintf(b.out, "%-44s %14s\n", "HTTP latency p50", ms(s.httpP50))
	fmt.Fprintf(b.out, "%-44s %14s\n", "HTTP latency p99", ms(s.httpP99))
	fmt.Fprintf(b.out, "%-44s %14s\n", "request → email at the SMTP sink p50", ms(s.emailP50))
	fmt.Fprintf(b.out, "%-44s %14s\n", "request → email at the SMTP sink p99", ms(s.emailP99))
	fmt.Fprintf(b.out, "%-44s %12.0f/s   go-mail to the same sink, 4 connections %.0f/s (ratio %.2f)\n",
		"emails through the mailer (queue drain)", s.emailsPerSec, smtp, s.emailsPerSec/smtp)
	fmt.Fprintf(b.out, "%-44s %11.0f MiB   (all four services, NATS and FerretDB share this process)\n",
		"peak RSS, whole process", s.peakRSSMiB)
}
