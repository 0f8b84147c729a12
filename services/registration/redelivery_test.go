package registration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// crashStage is how far a decider got with a request before it died.
type crashStage int

const (
	crashAfterJournal  crashStage = iota // journal entry written
	crashAfterWrite                      // ... and the registration
	crashAfterAnnounce                   // ... and the outcome published
	crashJournalGone                     // written and published, its journal entry since deleted
)

// playCrashedDecider does what the decider does with a group of two
// requests (as the committer stores them), with the service's own code, up
// to stage for the first, and dies there, before it journaled the second:
// the group was delivered to it and is never acknowledged. It returns the
// requests.
func playCrashedDecider(t *testing.T, h *harness, ev Event, emails [2]string, stage crashStage) ([2]request, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var reqs [2]request
	var bodies []json.RawMessage
	for i, email := range emails {
		reqs[i] = request{ID: events.NewID(), Kind: kindRegister, EventID: ev.ID, At: time.Now().UTC(),
			Register: &newRegistrationData{ID: events.NewID(), Name: "Kofi Mensah", Email: email,
				Mode: events.ModeOnline, Locale: "en", Consent: Consent{Given: true, TextVersion: ConsentTextVersion, At: time.Now().UTC()}}}
		body, err := json.Marshal(&reqs[i])
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	req := reqs[0]
	group, err := json.Marshal(bodies)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := h.bus.JS.PublishMsg(ctx, &nats.Msg{Subject: events.RequestGroupSubject, Data: group,
		Header: nats.Header{bus.HeaderGroup: []string{"2"}}}, jetstream.WithMsgID(req.ID))
	if err != nil {
		t.Fatal(err)
	}
	seq := ack.Sequence

	// The crashed decider was pinned and received the request.
	cons, err := h.bus.JS.Consumer(ctx, events.StreamRequests, deciderDurable)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second), jetstream.FetchPriorityGroup(deciderGroup))
	if err != nil {
		t.Fatal(err)
	}
	var msg jetstream.Msg
	for m := range batch.Messages() {
		msg = m
	}
	if msg == nil {
		t.Fatalf("the request was not delivered: %v", batch.Error())
	}
	if md, _ := msg.Metadata(); md == nil || md.Sequence.Stream != seq {
		t.Fatalf("delivered %+v, want stream sequence %d", md, seq)
	}

	// It decided it against the state in the database, and journalled it.
	r := &registrar{cfg: h.cfg, log: testkit.Logger(t), store: newStore(h.database()), bus: h.bus,
		links: mustSigner(t, h.cfg.LinkKey), public: "http://plenary.test"}
	stored, err := r.store.eventByID(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	regs, err := r.store.registrationsOf(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	st := newEventState(stored)
	st.load(regs)
	e := &journalEntry{Seq: position(seq, 0), RequestID: req.ID, EventID: ev.ID, At: time.Now().UTC()}
	if err := r.journalize(e, &req, st, st.decide(&req, uint64(e.Seq), time.Now())); err != nil {
		t.Fatal(err)
	}
	entries := []*journalEntry{e}
	if err := r.store.recordDecisions(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if stage >= crashAfterWrite {
		if err := r.store.applyDecisions(ctx, entries); err != nil {
			t.Fatal(err)
		}
	}
	if stage >= crashAfterAnnounce {
		if err := (&decider{r: r}).announce(ctx, entries); err != nil {
			t.Fatal(err)
		}
	}
	if stage == crashJournalGone {
		if err := r.store.dropDecisionsFrom(ctx, position(seq, 0)); err != nil {
			t.Fatal(err)
		}
	}

	// It died without acknowledging. The server redelivers the request once
	// AckWait has passed; a nak stands for that minute. Its pin goes with
	// it (PinnedTTL; unpinning stands for that).
	if err := msg.Nak(); err != nil {
		t.Fatal(err)
	}
	stream, err := h.bus.JS.Stream(ctx, events.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.UnpinConsumer(ctx, deciderDurable, deciderGroup); err != nil {
		t.Fatal(err)
	}
	return reqs, seq
}

// A request whose decision a crashed decider left behind, at any stage, is
// redelivered to the next decider: its outcome is announced exactly once,
// with the id derived from the request, and it is never decided a second
// time (which would announce a duplicate attempt, or a second
// registration). The request after it in the same group, not journaled
// yet, is decided once.
func TestRedeliveredRequestIsAnnouncedNotDecidedTwice(t *testing.T) {
	h := newHarness(t)
	db := h.database()
	out := collectOutcomes(t, h.bus.JS)
	for _, tc := range []struct {
		name  string
		stage crashStage
	}{
		{"after journal", crashAfterJournal},
		{"after write", crashAfterWrite},
		{"after announce", crashAfterAnnounce},
		{"journal entry gone", crashJournalGone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slug := fmt.Sprintf("crash-%d", tc.stage)
			ev := h.createEvent(slug, func(b map[string]any) { b["capacity"] = map[string]any{"in_person": 5, "online": 0} })
			first := fmt.Sprintf("first%d@example.org", tc.stage)
			crashed := fmt.Sprintf("crashed%d@example.org", tc.stage)
			second := fmt.Sprintf("second%d@example.org", tc.stage)
			later := fmt.Sprintf("later%d@example.org", tc.stage)
			h.register(slug, first, events.ModeOnline)
			waitOutcome(t, out, first, events.RegistrationConfirmed)
			testkit.WaitIdle(t, h.bus.JS, events.StreamRequests, deciderDurable)
			h.stop()

			reqs, seq := playCrashedDecider(t, h, ev, [2]string{crashed, second}, tc.stage)

			h.start()
			h.register(slug, later, events.ModeOnline)
			waitOutcome(t, out, crashed, events.RegistrationConfirmed)
			waitOutcome(t, out, second, events.RegistrationConfirmed)
			waitOutcome(t, out, later, events.RegistrationConfirmed)
			testkit.WaitIdle(t, h.bus.JS, events.StreamRequests, deciderDurable)

			announced := map[string][]string{}
			ids := map[string]int{}
			for _, env := range testkit.ReadStream(t, h.bus.JS, events.StreamRegistration) {
				ids[env.ID]++
				var p events.Registration
				if env.Decode(&p) == nil {
					announced[p.Email] = append(announced[p.Email], env.Type+" "+env.ID)
				}
			}
			for id, n := range ids {
				if n > 1 {
					t.Errorf("event id %s stored %d times", id, n)
				}
			}
			for i, email := range []string{crashed, second} {
				req := reqs[i]
				want := events.RegistrationConfirmed + " " + req.ID + "-1"
				if got := announced[email]; len(got) != 1 || got[0] != want {
					t.Errorf("request %d of group %d (%s): announced %v, want exactly [%s]", i, seq, tc.name, got, want)
				}
				n, err := db.Collection("registrations").CountDocuments(context.Background(), bson.D{{Key: "email", Value: email}})
				if err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Errorf("%d registrations stored for %s, want 1", n, email)
				}
				var reg Registration
				if err := db.Collection("registrations").FindOne(context.Background(), bson.D{{Key: "email", Value: email}}).Decode(&reg); err == nil &&
					(reg.ID != req.Register.ID || reg.Version != 1 || reg.RequestID != req.ID) {
					t.Errorf("stored %+v, want registration %s at version 1 from request %s", reg, req.Register.ID, req.ID)
				}
			}
		})
	}
}

// waitOutcome waits until an outcome of type typ is announced for email.
func waitOutcome(t *testing.T, out *outcomes, email, typ string) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, func() error {
		for _, m := range out.byEmail()[email] {
			if m.typ == typ {
				return nil
			}
		}
		return fmt.Errorf("no %s for %s", typ, email)
	})
}
