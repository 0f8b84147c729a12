package registration

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// Two healthy replicas while the pin keeps moving between them in a rush:
// the server unpins a decider that has not pulled for PinnedTTL (one busy
// with a long batch, say) and pins whoever pulls next, so a decider may
// still be deciding a batch when the other, newly pinned, reads the same
// requests from the stream. The journal's _id and the unique indexes must
// keep that from deciding anything twice or selling a seat twice.
func TestDecidersOverlapWhileThePinMoves(t *testing.T) {
	const (
		total   = 2000
		clients = 32
		seats   = 60
		slug    = "moving-pin"
	)
	n := testkit.StartNATS(t)
	uri, database := testkit.MongoURI(t), testkit.DatabaseName(t)
	watch := &logWatch{}
	a := startReplica(t, "A", replicaConfig(n.URL, uri, database), watch)
	b := startReplica(t, "B", replicaConfig(n.URL, uri, database), watch)
	bus := n.Bus(t)
	out := collectOutcomes(t, bus.JS)
	ev := createEvent(t, a.admin, slug, withSeats(seats))
	testkit.Eventually(t, 10*time.Second, func() error {
		for _, base := range []string{a.base, b.base} {
			if st, _, err := sendHTTP("GET", base+"/api/events/"+slug, nil); err != nil || st != http.StatusOK {
				return fmt.Errorf("event not readable: %d %v", st, err)
			}
		}
		return nil
	})

	// Move the pin every 100 ms while the rush lasts, as a busy decider's
	// lapse would.
	stream, err := bus.JS.Stream(context.Background(), events.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	stopUnpinning := make(chan struct{})
	unpinned := make(chan int)
	go func() {
		count := 0
		defer func() { unpinned <- count }()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopUnpinning:
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				if stream.UnpinConsumer(ctx, deciderDurable, deciderGroup) == nil {
					count++
				}
				cancel()
			}
		}
	}()
	attempts := rushAttempts(total)
	start := time.Now()
	sendRush(attempts, clients, slug, map[string]string{"A": a.base, "B": b.base}, func(int64) {})
	sendTook := time.Since(start)
	waitDecided(attempts, out, seats, 60*time.Second) // keep moving the pin until all is decided
	close(stopUnpinning)
	unpins := <-unpinned
	waitDeciderIdle(t, bus.JS, 150*time.Second)
	tl := countOutcomes(attempts, out, seats)

	t.Logf("sent %d in %s; accepted %d, refused %d; decided %d: confirmed %d (in person %d/%d), waitlisted %d, rejected %d, duplicate attempts %d; lost %d",
		tl.sent, sendTook.Round(time.Millisecond), tl.accepted, tl.refused, tl.decided, tl.confirmed, tl.confirmedInPerson, seats,
		tl.waitlisted, tl.rejected, tl.duplicates, tl.lost)
	t.Logf("%d unpins; takeovers logged: A %d, B %d; failed batches A %d, B %d; journal conflicts %d",
		unpins, len(watch.takeovers("A")), len(watch.takeovers("B")),
		len(watch.find("A", "decider: batch failed")), len(watch.find("B", "decider: batch failed")),
		len(watch.find("", "decider: journal entries conflict")))
	if tl.refused > 0 {
		t.Errorf("%d requests refused by healthy replicas", tl.refused)
	}
	if tl.lost > 0 {
		t.Errorf("%d accepted requests never decided", tl.lost)
	}
	for _, p := range tl.problems {
		t.Error(p)
	}
	if tl.confirmedInPerson != seats {
		t.Errorf("%d confirmed in person, want all %d seats taken", tl.confirmedInPerson, seats)
	}
	if len(watch.takeovers("A")) < 2 && len(watch.takeovers("B")) < 2 {
		t.Errorf("the pin never moved between the deciders: the test tested nothing")
	}
	checkStored(t, uri, database, ev.ID, seats, tl.confirmed+tl.waitlisted+tl.rejected)
}
