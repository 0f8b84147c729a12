package registration

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// What the failure tests check: the outcome events a set of registration
// attempts got, collected as they are stored, and the registrations in the
// database.

// outcomeMsg is one registration event as stored in the REGISTRATION stream.
type outcomeMsg struct {
	seq    uint64
	stored time.Time // the server's store time
	id     string    // the CloudEvents id (= Nats-Msg-Id)
	typ    string
	reg    events.Registration
}

// outcomes collects every registration.v1.registration.* message of the
// REGISTRATION stream as it is stored, so checks read memory, not the
// stream, on every poll.
type outcomes struct {
	mu   sync.Mutex
	msgs []outcomeMsg
	bad  []string
}

func collectOutcomes(t *testing.T, js jetstream.JetStream) *outcomes {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, events.StreamRegistration)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"registration.v1.registration.>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := &outcomes{}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		env, err := events.Parse(m.Data())
		var p events.Registration
		if err == nil {
			err = env.Decode(&p)
		}
		// Consumers take the trace from the header first (bus.delivery).
		if h := m.Headers().Get(events.TraceHeader); err == nil && h != env.TraceParent {
			err = fmt.Errorf("traceparent header %q, envelope %q", h, env.TraceParent)
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if err != nil {
			o.bad = append(o.bad, fmt.Sprintf("seq %d: %v", md.Sequence.Stream, err))
			return
		}
		o.msgs = append(o.msgs, outcomeMsg{seq: md.Sequence.Stream, stored: md.Timestamp, id: env.ID, typ: env.Type, reg: p})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after cc.Stop: cleanups run last first
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, b := range o.bad {
			t.Errorf("outcome message: %s", b)
		}
	})
	t.Cleanup(cc.Stop)
	return o
}

// all returns a copy of what was collected so far.
func (o *outcomes) all() []outcomeMsg {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.msgs)
}

// byEmail groups the outcomes by the address in their payload.
func (o *outcomes) byEmail() map[string][]outcomeMsg {
	out := map[string][]outcomeMsg{}
	for _, m := range o.all() {
		out[m.reg.Email] = append(out[m.reg.Email], m)
	}
	return out
}

// placesRegistration reports whether typ is the outcome that places a registration
// (as against a duplicate attempt or a later change).
func placesRegistration(typ string) bool {
	switch typ {
	case events.RegistrationConfirmed, events.RegistrationWaitlisted, events.RegistrationRejected,
		events.RegistrationPending:
		return true
	}
	return false
}

// regAttempt is one registration request sent by a test and what the client
// saw of it.
type regAttempt struct {
	email, mode string
	waitlistOK  bool
	to          string // replica name
	status      int    // 0 when the client got no response
	err         error
	body        string
}

func (a *regAttempt) accepted() bool { return a.status == http.StatusAccepted }

// outcomeTally is what the outcomes say about a set of attempts.
type outcomeTally struct {
	sent, accepted, refused         int
	decided                         int // decisions of addresses that had a request accepted
	confirmed, waitlisted, rejected int
	duplicates                      int
	confirmedInPerson               int
	lost                            int // accepted requests without an outcome
	decidedButRefused               int // refused at the client, decided anyway (stored, the answer lost)
	problems                        []string
}

// countOutcomes checks every address's outcomes against its attempts: each
// accepted request gets exactly one outcome (the first placing the
// registration, each further one a duplicate attempt about it), no
// address is placed twice, no outcome id is stored twice.
func countOutcomes(attempts []regAttempt, out *outcomes, inPersonSeats int) outcomeTally {
	var tl outcomeTally
	sent, accepted := map[string]int{}, map[string]int{}
	for i := range attempts {
		a := &attempts[i]
		tl.sent++
		sent[a.email]++
		if a.accepted() {
			tl.accepted++
			accepted[a.email]++
		} else {
			tl.refused++
		}
	}
	problem := func(format string, args ...any) {
		if len(tl.problems) < 20 {
			tl.problems = append(tl.problems, fmt.Sprintf(format, args...))
		}
	}
	ids := map[string]int{}
	byEmail := out.byEmail()
	for _, msgs := range byEmail {
		for _, m := range msgs {
			ids[m.id]++
			if ids[m.id] == 2 {
				problem("outcome id %s (%s for %s) stored twice", m.id, m.typ, m.reg.Email)
			}
		}
	}
	for email, n := range sent {
		msgs := byEmail[email]
		var placed []outcomeMsg
		var dups []outcomeMsg
		for _, m := range msgs {
			switch {
			case placesRegistration(m.typ):
				placed = append(placed, m)
			case m.typ == events.RegistrationDuplicateAttempt:
				dups = append(dups, m)
			default:
				problem("%s: unexpected %s", email, m.typ)
			}
		}
		decided := len(placed) + len(dups)
		if accepted[email] > 0 {
			tl.decided += decided
		}
		if lost := accepted[email] - decided; lost > 0 {
			tl.lost += lost
		}
		if decided > accepted[email] {
			tl.decidedButRefused += min(decided, n) - accepted[email]
		}
		if decided > n {
			problem("%s: %d outcomes for %d requests sent (decided twice)", email, decided, n)
		}
		if decided > 0 && len(placed) != 1 {
			problem("%s: placed %d times (want exactly once): %v", email, len(placed), outcomeTypes(placed))
		}
		confirmed := 0
		for _, m := range placed {
			switch m.typ {
			case events.RegistrationConfirmed:
				confirmed++
				tl.confirmed++
				if m.reg.Mode == events.ModeInPerson {
					tl.confirmedInPerson++
				}
			case events.RegistrationWaitlisted:
				tl.waitlisted++
			case events.RegistrationRejected:
				tl.rejected++
			}
		}
		if confirmed > 1 {
			problem("%s: confirmed %d times", email, confirmed)
		}
		tl.duplicates += len(dups)
		for _, d := range dups {
			if len(placed) == 0 || d.reg.ID != placed[0].reg.ID {
				problem("%s: duplicate attempt about registration %s, not the one placed", email, d.reg.ID)
			}
		}
	}
	for email := range byEmail {
		if sent[email] == 0 {
			problem("outcome for %s, never sent", email)
		}
	}
	if tl.confirmedInPerson > inPersonSeats {
		problem("%d confirmed in person, %d seats", tl.confirmedInPerson, inPersonSeats)
	}
	return tl
}

func outcomeTypes(msgs []outcomeMsg) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.typ)
	}
	return out
}

// waitDecided polls until every accepted request has an outcome (or
// timeout passes) and returns the tally, problems included; it does not
// fail the test, so the caller can print the counts first.
func waitDecided(attempts []regAttempt, out *outcomes, seats int, timeout time.Duration) outcomeTally {
	deadline := time.Now().Add(timeout)
	for {
		tl := countOutcomes(attempts, out, seats)
		if (tl.lost == 0 && len(tl.problems) == 0) || time.Now().After(deadline) {
			return tl
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkStored checks the registrations in the database: one per address,
// never more confirmed in person than seats, each seat held once, and as
// many as the outcomes placed.
func checkStored(t *testing.T, uri, database, eventID string, seats, placed int) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Connect(ctx, uri, database, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Disconnect(db)
	cur, err := db.Collection("registrations").Find(ctx, bson.D{{Key: "event_id", Value: eventID}})
	if err != nil {
		t.Fatal(err)
	}
	var regs []Registration
	if err := cur.All(ctx, &regs); err != nil {
		t.Fatal(err)
	}
	perAddress, seat := map[string]int{}, map[int]string{}
	inPerson := 0
	for _, r := range regs {
		perAddress[strings.ToLower(r.Email)]++
		if r.Status == events.StatusConfirmed && r.Mode == events.ModeInPerson {
			inPerson++
			if other, taken := seat[r.Seat]; taken || r.Seat < 1 || r.Seat > seats {
				t.Errorf("seat %d held by %s and %s (or out of 1..%d)", r.Seat, other, r.ID, seats)
			}
			seat[r.Seat] = r.ID
		}
	}
	for addr, n := range perAddress {
		if n > 1 {
			t.Errorf("%s stored %d times", addr, n)
		}
	}
	if inPerson > seats {
		t.Errorf("%d stored as confirmed in person, %d seats", inPerson, seats)
	}
	if len(regs) != placed {
		t.Errorf("%d registrations stored, %d announced as placed", len(regs), placed)
	}
}
