package registration

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// The journal spans collections of journalSpan positions: entries are read
// back in order across them (and from the collections used before, keyed
// by stream sequence), and pruning drops a collection only once the floor
// has passed all of it.
func TestJournalSpansArePrunedWhole(t *testing.T) {
	ctx := context.Background()
	s := newStore(testkit.Mongo(t))
	entry := func(seq int64) *journalEntry {
		return &journalEntry{Seq: seq, RequestID: "req", EventID: "evt", At: time.Now().UTC()}
	}
	// Written before the split, and before requests were grouped.
	if _, err := s.db.Collection(legacyJournal).InsertMany(ctx, []any{entry(3), entry(5)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Collection(legacyPrefix+"0").InsertMany(ctx, []any{entry(7)}); err != nil {
		t.Fatal(err)
	}
	var batch []*journalEntry
	for _, seq := range []int64{journalSpan - 2, journalSpan - 1, journalSpan, journalSpan + 1, 2*journalSpan + 7} {
		batch = append(batch, entry(seq))
	}
	if err := s.recordDecisions(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.recordDecisions(ctx, batch[1:2]); err != errFence {
		t.Fatalf("recording a sequence again: %v, want the fence", err)
	}
	seqs := func(after int64) []int64 {
		t.Helper()
		got, err := s.pendingDecisions(ctx, after)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, e := range got {
			out = append(out, e.Seq)
		}
		return out
	}
	if got, want := seqs(lastOf(4)), []int64{position(5, 0), position(7, 0), journalSpan - 2, journalSpan - 1, journalSpan, journalSpan + 1, 2*journalSpan + 7}; !slices.Equal(got, want) {
		t.Fatalf("pending after sequence 4: %v, want %v", got, want)
	}
	if got, want := seqs(journalSpan), []int64{journalSpan + 1, 2*journalSpan + 7}; !slices.Equal(got, want) {
		t.Fatalf("pending after %d: %v, want %v", journalSpan, got, want)
	}

	// A floor inside the first span drops nothing of it.
	if err := s.pruneDecisions(ctx, journalSpan-2, false); err != nil {
		t.Fatal(err)
	}
	if got, want := seqs(0), []int64{journalSpan - 2, journalSpan - 1, journalSpan, journalSpan + 1, 2*journalSpan + 7}; !slices.Equal(got, want) {
		t.Fatalf("after pruning to %d: %v, want %v (the legacy entries gone, the span kept)", journalSpan-2, got, want)
	}
	// Past the first span's end: it is dropped, the legacy collection too.
	if err := s.pruneDecisions(ctx, journalSpan+1, false); err != nil {
		t.Fatal(err)
	}
	if got, want := seqs(0), []int64{journalSpan, journalSpan + 1, 2*journalSpan + 7}; !slices.Equal(got, want) {
		t.Fatalf("after pruning to %d: %v, want %v", journalSpan+1, got, want)
	}
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if want := []string{journalPrefix + "1", journalPrefix + "2"}; !slices.Equal(names, want) {
		t.Fatalf("collections %v, want %v", names, want)
	}

	// A sweep also deletes what is decided in the span the floor is in.
	if err := s.pruneDecisions(ctx, journalSpan, true); err != nil {
		t.Fatal(err)
	}
	if got, want := seqs(0), []int64{journalSpan + 1, 2*journalSpan + 7}; !slices.Equal(got, want) {
		t.Fatalf("after sweeping to %d: %v, want %v", journalSpan, got, want)
	}
	if err := s.dropDecisionsFrom(ctx, journalSpan+1); err != nil {
		t.Fatal(err)
	}
	if got := seqs(0); len(got) != 0 {
		t.Fatalf("after dropping from %d: %v, want none", journalSpan+1, got)
	}

	// Dropping from a position drops the legacy entries at or after it.
	if _, err := s.db.Collection(legacyPrefix+"0").InsertMany(ctx, []any{entry(20), entry(21)}); err != nil {
		t.Fatal(err)
	}
	if err := s.dropDecisionsFrom(ctx, position(20, 1)); err != nil {
		t.Fatal(err)
	}
	if got, want := seqs(0), []int64{position(20, 0)}; !slices.Equal(got, want) {
		t.Fatalf("after dropping from sequence 20's second request: %v, want %v", got, want)
	}
}

// A reload reads every event and, in one pass, the registrations of those
// not long over; an event long over is read when first asked for, and one
// created since the reload starts empty.
func TestDeciderLoadsStatesInOnePass(t *testing.T) {
	ctx := context.Background()
	db := testkit.Mongo(t)
	s := newStore(db)
	now := time.Now().UTC()
	current := Event{ID: "evt-now", Slug: "now", Version: 1, StartsAt: now.Add(24 * time.Hour), EndsAt: now.Add(48 * time.Hour)}
	old := Event{ID: "evt-old", Slug: "old", Version: 1, StartsAt: now.Add(-2 * hotFor), EndsAt: now.Add(-2*hotFor + time.Hour)}
	if _, err := s.events.InsertMany(ctx, []any{current, old}); err != nil {
		t.Fatal(err)
	}
	reg := func(id, eventID string) Registration {
		return Registration{ID: id, EventID: eventID, EmailKey: eventID + ":" + id, Email: id + "@example.org",
			Mode: "online", Status: "confirmed", SeatKey: id}
	}
	if _, err := s.registrations.InsertMany(ctx, []any{reg("a", current.ID), reg("b", current.ID), reg("c", old.ID)}); err != nil {
		t.Fatal(err)
	}
	d := &decider{r: &registrar{store: s}}
	if err := d.loadStates(ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.states[current.ID]; st == nil || len(st.regs) != 2 {
		t.Fatalf("current event's state %+v, want its 2 registrations", st)
	}
	if d.states[old.ID] != nil || !d.cold[old.ID] {
		t.Fatalf("the event long over was loaded (%v) or not marked cold (%v)", d.states[old.ID] != nil, d.cold[old.ID])
	}
	st, err := d.state(ctx, old.ID)
	if err != nil || st == nil || len(st.regs) != 1 {
		t.Fatalf("the event long over, on first use: %+v, %v; want its registration", st, err)
	}
	later := Event{ID: "evt-later", Slug: "later", Version: 1, StartsAt: now.Add(24 * time.Hour), EndsAt: now.Add(48 * time.Hour)}
	if _, err := s.events.InsertOne(ctx, later); err != nil {
		t.Fatal(err)
	}
	if st, err := d.state(ctx, later.ID); err != nil || st == nil || len(st.regs) != 0 {
		t.Fatalf("an event created since: %+v, %v; want an empty state", st, err)
	}
	if st, err := d.state(ctx, "evt-none"); err != nil || st != nil {
		t.Fatalf("no such event: %+v, %v; want nil", st, err)
	}
}

// A journal entry goes to the database with its decisions as one blob and
// comes back whole; entries stored before, as fields, still read.
func TestJournalEntryRoundTrip(t *testing.T) {
	at := time.Now().UTC().Truncate(time.Millisecond)
	e := journalEntry{
		Seq: 42, RequestID: "req-1", EventID: "evt", At: at, TraceParent: "00-abc-def-01",
		Regs:     []Registration{{ID: "reg-1", EventID: "evt", Email: "ada@example.org", Name: "Ada", Status: "confirmed", Seat: 3, Version: 2}},
		Event:    &Event{ID: "evt", Version: 4, Slug: "evt"},
		Outcomes: []journalOutcome{{Type: "registration.v1.registration.confirmed", RegID: "reg-1", Reason: "promoted"}},
		Reply:    "_INBOX.x", ReplyBody: []byte(`{"status":"ok"}`),
	}
	// Every stored field of journalEntry must be in the head or the blob:
	// a field added to one and not the other would be lost on a takeover.
	stored := 0
	typ := reflect.TypeOf(e)
	for i := range typ.NumField() {
		if typ.Field(i).Tag.Get("bson") != "-" {
			stored++
		}
	}
	if head, body := reflect.TypeOf(journalHead{}).NumField()-1, reflect.TypeOf(journalBody{}).NumField(); stored != head+body {
		t.Fatalf("journalEntry stores %d fields, the head and blob hold %d: add the new ones to journalHead or journalBody", stored, head+body)
	}
	raw, err := bson.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bson.Raw(raw).LookupErr("regs"); err == nil {
		t.Fatal("registrations stored as fields, want them in the blob")
	}
	var back journalEntry
	if err := bson.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, e) {
		t.Fatalf("read back %+v, want %+v", back, e)
	}
	old, err := bson.Marshal(journalFields(e))
	if err != nil {
		t.Fatal(err)
	}
	var fromOld journalEntry
	if err := bson.Unmarshal(old, &fromOld); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromOld, e) {
		t.Fatalf("an entry stored as fields read back as %+v, want %+v", fromOld, e)
	}
}

// An erased registration leaves its name and address nowhere in the
// service's database once its decisions are acknowledged and the journal
// swept, even when too few requests came to fill a span of the journal.
func TestErasureLeavesNothingInTheJournal(t *testing.T) {
	journalSweep = 300 * time.Millisecond
	t.Cleanup(func() { journalSweep = 30 * time.Second })
	h := newHarness(t)
	h.createEvent("sweep")
	if r := h.register("sweep", "Grete.Weiskopf@example.org", events.ModeOnline); r.Status != 202 {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	tok := token(h.outcome(events.RegistrationConfirmed, "Grete.Weiskopf@example.org").ManageURL)
	if r := h.pub.Do(t, "DELETE", "/api/manage/"+tok, nil); r.Status != 200 {
		t.Fatalf("erase: %d %s", r.Status, r.Body)
	}
	h.waitPublished(events.RegistrationErased, 1)
	db := h.database()
	testkit.Eventually(t, 10*time.Second, func() error {
		names, err := db.ListCollectionNames(context.Background(), bson.D{})
		if err != nil {
			return err
		}
		for _, name := range names {
			cur, err := db.Collection(name).Find(context.Background(), bson.D{})
			if err != nil {
				return err
			}
			var docs []bson.Raw
			if err := cur.All(context.Background(), &docs); err != nil {
				return err
			}
			for _, doc := range docs {
				low := strings.ToLower(string(doc))
				if strings.Contains(low, "weiskopf") {
					return fmt.Errorf("collection %s still holds the person: %s", name, doc)
				}
			}
		}
		return nil
	})
}
