package registration

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// Two replicas share NATS and MongoDB; A decides until it dies in the
// middle of a rush, as a crash would (its connections cut, then stopped),
// and B takes over: every accepted request is decided exactly once, and
// nobody is confirmed beyond the seats.
func TestDeciderFailoverDuring2000Registrations(t *testing.T) {
	const (
		total    = 2000
		clients  = 32
		killAt   = 500
		seats    = 60
		slug     = "failover-rush"
		takeover = 15 * time.Second
	)
	n := testkit.StartNATS(t)
	uri, database := testkit.MongoURI(t), testkit.DatabaseName(t)
	natsProxy, mongoProxy := testkit.StartProxy(t, n.URL), testkit.StartProxy(t, uri)
	watch := &logWatch{}
	a := startReplica(t, "A", replicaConfig(natsProxy.URL(n.URL), mongoProxy.URL(uri), database), watch)
	bus := n.Bus(t)
	out := collectOutcomes(t, bus.JS)

	ev := createEvent(t, a.admin, slug, withSeats(seats))
	// A decides a first registration alone, so its decider holds the pin
	// when B starts.
	testkit.Eventually(t, 10*time.Second, func() error {
		st, body, err := sendHTTP("POST", a.base+"/api/events/"+slug+"/registrations", registrationBody("warmup@example.org", events.ModeOnline, false))
		if err != nil || st != http.StatusAccepted {
			return fmt.Errorf("warm-up: %d %s %v", st, body, err)
		}
		return nil
	})
	testkit.Eventually(t, 10*time.Second, func() error {
		if len(out.byEmail()["warmup@example.org"]) != 1 {
			return fmt.Errorf("warm-up not decided")
		}
		return nil
	})
	if len(watch.takeovers("A")) == 0 {
		t.Fatalf("A decided without taking over: %v", watch.find("A", "decider:"))
	}
	b := startReplica(t, "B", replicaConfig(n.URL, uri, database), watch)

	attempts := rushAttempts(total)
	var (
		killOnce sync.Once
		killNow  = make(chan struct{})
		cutAt    time.Time
		killTook time.Duration
		killErr  error
		killed   = make(chan struct{})
	)
	go func() {
		defer close(killed)
		<-killNow
		cutAt = time.Now()
		natsProxy.Cut()
		mongoProxy.Cut()
		killTook, killErr = a.stop(t)
	}()
	sendStart := time.Now()
	sendRush(attempts, clients, slug, map[string]string{"A": a.base, "B": b.base}, func(accepted int64) {
		if accepted == killAt {
			killOnce.Do(func() { close(killNow) })
		}
	})
	sendTook := time.Since(sendStart)
	killOnce.Do(func() { close(killNow) }) // fewer than killAt accepted: kill now anyway
	<-killed

	// The next decision after the cut is B's: the first outcome stored once
	// B had logged that it took over.
	var takeoverAt, firstAfter time.Time
	testkit.Eventually(t, takeover+5*time.Second, func() error {
		for _, l := range watch.takeovers("B") {
			if l.at.After(cutAt) {
				takeoverAt = l.at
				break
			}
		}
		if takeoverAt.IsZero() {
			return fmt.Errorf("B has not taken over %s after the cut", time.Since(cutAt).Round(time.Millisecond))
		}
		for _, m := range out.all() {
			if !m.stored.Before(takeoverAt) {
				firstAfter = m.stored
				return nil
			}
		}
		return fmt.Errorf("B took over but has decided nothing yet")
	})

	warmup := regAttempt{email: "warmup@example.org", mode: events.ModeOnline, to: "A", status: http.StatusAccepted}
	all := append([]regAttempt{warmup}, attempts...)
	waitDecided(all, out, seats, 60*time.Second) // counted below, once redeliveries had their chance
	waitDeciderIdle(t, bus.JS, 150*time.Second)  // A's unacked requests come back after AckWait
	tl := countOutcomes(all, out, seats)
	refusedBy := map[string]int{}
	for _, at := range attempts {
		switch {
		case at.accepted():
		case at.err != nil:
			refusedBy[at.to+" connection error"]++
		default:
			refusedBy[fmt.Sprintf("%s %d", at.to, at.status)]++
		}
	}
	t.Logf("sent %d (the warm-up included) in %s with %d clients; accepted %d, refused %d %v", tl.sent, sendTook.Round(time.Millisecond), clients, tl.accepted, tl.refused, refusedBy)
	t.Logf("decided %d: confirmed %d (in person %d/%d), waitlisted %d, rejected %d, duplicate attempts %d; lost %d; decided though refused %d",
		tl.decided, tl.confirmed, tl.confirmedInPerson, seats, tl.waitlisted, tl.rejected, tl.duplicates, tl.lost, tl.decidedButRefused)
	t.Logf("takeover: B took over %s after the cut, first decision %s after the cut; A stopped in %s (err %v); takeovers logged before the cut: A %d, B %d",
		takeoverAt.Sub(cutAt).Round(time.Millisecond), firstAfter.Sub(cutAt).Round(time.Millisecond), killTook.Round(time.Millisecond), killErr,
		countBefore(watch.takeovers("A"), cutAt), countBefore(watch.takeovers("B"), cutAt))

	if d := firstAfter.Sub(cutAt); d > takeover {
		t.Errorf("B's first decision came %s after the cut, want at most %s", d, takeover)
	}
	if tl.lost > 0 {
		t.Errorf("%d accepted requests never decided", tl.lost)
	}
	for _, p := range tl.problems {
		t.Error(p)
	}
	if tl.confirmedInPerson != seats {
		t.Errorf("%d confirmed in person, want all %d seats taken (about %d asked)", tl.confirmedInPerson, seats, total/2)
	}
	if tl.accepted < killAt {
		t.Errorf("only %d accepted; the kill came late", tl.accepted)
	}
	checkStored(t, uri, database, ev.ID, seats, tl.confirmed+tl.waitlisted+tl.rejected)
}

// With MongoDB away for 30 seconds, registrations are still accepted (the
// accept path needs only NATS once the event is cached), and once MongoDB
// is back every one of them is decided, exactly once.
func TestMongoUnavailable30sDuringRegistrations(t *testing.T) {
	const (
		outage  = 30 * time.Second
		senders = 4
		slug    = "mongo-outage"
	)
	n := testkit.StartNATS(t)
	uri, database := testkit.MongoURI(t), testkit.DatabaseName(t)
	mongoProxy := testkit.StartProxy(t, uri)
	watch := &logWatch{}
	s := startReplica(t, "S", replicaConfig(n.URL, mongoProxy.URL(uri), database), watch)
	bus := n.Bus(t)
	out := collectOutcomes(t, bus.JS)
	createEvent(t, s.admin, slug, withSeats(10))

	var mu sync.Mutex
	var attempts []regAttempt
	register := func(email, mode string) {
		at := regAttempt{email: email, mode: mode, waitlistOK: true, to: "S"}
		var body []byte
		at.status, body, at.err = sendHTTP("POST", s.base+"/api/events/"+slug+"/registrations", registrationBody(email, mode, true))
		at.body = string(body)
		mu.Lock()
		attempts = append(attempts, at)
		mu.Unlock()
	}
	modeOf := func(i int) string {
		if i%2 == 0 {
			return events.ModeInPerson
		}
		return events.ModeOnline
	}
	testkit.Eventually(t, 10*time.Second, func() error { // the event is stored by the outbox relay
		if st, _, err := sendHTTP("GET", s.base+"/api/events/"+slug, nil); err != nil || st != http.StatusOK {
			return fmt.Errorf("event not readable: %d %v", st, err)
		}
		return nil
	})
	for i := range 20 {
		register(fmt.Sprintf("before%02d@example.org", i), modeOf(i))
	}
	if tl := waitDecided(attempts, out, 10, 15*time.Second); tl.lost > 0 || tl.accepted != 20 {
		t.Fatalf("before the outage: accepted %d of 20, %d undecided", tl.accepted, tl.lost)
	}

	mongoProxy.Cut()
	cutAt := time.Now()
	before := len(attempts)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(cutAt) < outage {
				i := next.Add(1)
				register(fmt.Sprintf("during%03d@example.org", i), modeOf(int(i)))
				time.Sleep(100 * time.Millisecond) // pace: the outage, not the load, is under test
			}
		}()
	}
	wg.Wait()
	during := append([]regAttempt(nil), attempts[before:]...)
	mongoProxy.Restore()
	restoredAt := time.Now()
	for i := range 10 {
		register(fmt.Sprintf("after%02d@example.org", i), modeOf(i))
	}

	statuses := map[string]int{}
	var sample string
	for _, at := range during {
		key := fmt.Sprint(at.status)
		if at.err != nil {
			key = "connection error"
		}
		statuses[key]++
		if !at.accepted() && sample == "" {
			sample = fmt.Sprintf("%s %v", at.body, at.err)
		}
	}
	waitDecided(attempts, out, 10, 30*time.Second)
	decidedIn := time.Since(restoredAt)
	waitDeciderIdle(t, bus.JS, 30*time.Second)
	tl := countOutcomes(attempts, out, 10)
	t.Logf("during the %s outage: %d requests, answers %v", outage, len(during), statuses)
	t.Logf("total: sent %d, accepted %d, refused %d; decided %d (confirmed %d, waitlisted %d), lost %d; all decided %s after MongoDB came back; decider retries logged %d",
		tl.sent, tl.accepted, tl.refused, tl.decided, tl.confirmed, tl.waitlisted, tl.lost, decidedIn.Round(time.Millisecond),
		len(watch.find("S", "decider: batch failed")))
	if statuses["202"] != len(during) {
		t.Errorf("with MongoDB away, %d of %d registrations were not accepted: %v; e.g. %s",
			len(during)-statuses["202"], len(during), statuses, sample)
	}
	if tl.lost > 0 {
		t.Errorf("%d accepted requests never decided", tl.lost)
	}
	if tl.decidedButRefused > 0 {
		t.Errorf("%d refused requests were decided anyway", tl.decidedButRefused)
	}
	for _, p := range tl.problems {
		t.Error(p)
	}
	if tl.confirmedInPerson > 10 {
		t.Errorf("%d confirmed in person, 10 seats", tl.confirmedInPerson)
	}
}

// A decider that dies holding requests it could not decide (MongoDB away
// from it) hands them over within seconds even when no new request comes
// to wake the next decider: the people who got 202 are not kept waiting
// for the consumer's AckWait.
func TestTakeoverOfUndecidedRequestsWithoutNewTraffic(t *testing.T) {
	const (
		slug     = "quiet-takeover"
		waiting  = 5
		takeover = 15 * time.Second
	)
	n := testkit.StartNATS(t)
	uri, database := testkit.MongoURI(t), testkit.DatabaseName(t)
	natsProxy, mongoProxy := testkit.StartProxy(t, n.URL), testkit.StartProxy(t, uri)
	watch := &logWatch{}
	a := startReplica(t, "A", replicaConfig(natsProxy.URL(n.URL), mongoProxy.URL(uri), database), watch)
	bus := n.Bus(t)
	out := collectOutcomes(t, bus.JS)
	createEvent(t, a.admin, slug)
	var attempts []regAttempt
	register := func(base, email string) {
		testkit.Eventually(t, 10*time.Second, func() error {
			st, body, err := sendHTTP("POST", base+"/api/events/"+slug+"/registrations", registrationBody(email, events.ModeOnline, false))
			if err != nil || st != http.StatusAccepted {
				return fmt.Errorf("register %s: %d %s %v", email, st, body, err)
			}
			return nil
		})
		attempts = append(attempts, regAttempt{email: email, mode: events.ModeOnline, status: http.StatusAccepted})
	}
	register(a.base, "warmup@example.org") // A decides it, and holds the pin
	if tl := waitDecided(attempts, out, 0, 10*time.Second); tl.lost > 0 {
		t.Fatal("warm-up not decided")
	}
	b := startReplica(t, "B", replicaConfig(n.URL, uri, database), watch)

	mongoProxy.Cut() // A receives what comes next and cannot decide it
	for i := range waiting {
		register(b.base, fmt.Sprintf("waiting%d@example.org", i))
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if len(watch.find("A", "decider: batch failed")) == 0 {
			return fmt.Errorf("A has not tried the batch yet")
		}
		return nil
	})
	cutAt := time.Now()
	natsProxy.Cut()
	if took, err := a.stop(t); err != nil {
		t.Logf("A stopped in %s with %v", took, err)
	}

	deadline := 90 * time.Second // longer than AckWait, to measure how late it comes
	tl := waitDecided(attempts, out, 0, deadline)
	took := time.Since(cutAt)
	t.Logf("%d requests held by the dead decider; all decided %s after the cut (lost %d); B took over after %v",
		waiting, took.Round(time.Millisecond), tl.lost, tookOverAfter(watch, "B", cutAt))
	if tl.lost > 0 {
		t.Fatalf("%d accepted requests still undecided %s after the cut", tl.lost, deadline)
	}
	if took > takeover {
		t.Errorf("the requests the dead decider held were decided %s after the cut, want at most %s", took.Round(time.Second), takeover)
	}
	for _, p := range tl.problems {
		t.Error(p)
	}
}

// countBefore counts the records logged before at.
func countBefore(ls []logged, at time.Time) int {
	n := 0
	for _, l := range ls {
		if l.at.Before(at) {
			n++
		}
	}
	return n
}

// tookOverAfter says how long after since the replica's decider logged
// that it took over, or "never".
func tookOverAfter(w *logWatch, replica string, since time.Time) string {
	for _, l := range w.takeovers(replica) {
		if l.at.After(since) {
			return l.at.Sub(since).Round(time.Millisecond).String()
		}
	}
	return "never"
}

// rushAttempts makes total registrations: half in person, a quarter of
// those not willing to wait, one in a hundred a second attempt of an
// address registered online (every other one of them in person), sent to
// replicas A and B in turns of two.
func rushAttempts(total int) []regAttempt {
	attempts := make([]regAttempt, total)
	for i := range attempts {
		at := &attempts[i]
		at.email = fmt.Sprintf("p%04d@example.org", i)
		at.mode = events.ModeOnline
		if i%2 == 0 {
			at.mode = events.ModeInPerson
		}
		at.waitlistOK = i%4 != 0
		if i%100 == 99 {
			at.email = fmt.Sprintf("p%04d@example.org", i-40)
			if i%200 == 99 {
				at.mode = events.ModeInPerson
			}
		}
		at.to = "A"
		if (i/2)%2 == 1 {
			at.to = "B"
		}
	}
	return attempts
}

// sendRush sends the attempts from clients goroutines to the replicas'
// base URLs and records what each client saw; accepted is called with the
// running count of 202s.
func sendRush(attempts []regAttempt, clients int, slug string, bases map[string]string, accepted func(int64)) {
	var n atomic.Int64
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				at := &attempts[i]
				var body []byte
				at.status, body, at.err = sendHTTP("POST", bases[at.to]+"/api/events/"+slug+"/registrations",
					registrationBody(at.email, at.mode, at.waitlistOK))
				at.body = string(body)
				if at.accepted() {
					accepted(n.Add(1))
				}
			}
		}()
	}
	for i := range attempts {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}
