package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// published is one call to a Publisher.
type published struct {
	Subject, MsgID string
	Body           []byte
}

// fakePublisher records what it publishes; while fail is set it publishes
// nothing and returns fail.
type fakePublisher struct {
	mu       sync.Mutex
	fail     error
	got      []published
	attempts int
}

func (p *fakePublisher) Publish(_ context.Context, subject, msgID string, body []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if p.fail != nil {
		return p.fail
	}
	p.got = append(p.got, published{subject, msgID, body})
	return nil
}

func (p *fakePublisher) setFail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = err
}

func (p *fakePublisher) tries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts
}

func (p *fakePublisher) calls() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func (p *fakePublisher) ids() []string {
	var ids []string
	for _, c := range p.calls() {
		ids = append(ids, c.MsgID)
	}
	return ids
}

// claim is the state change of the test's "claim" entries: a document
// inserted with a known id, so that redoing it is harmless.
type claim struct {
	ID    string `bson:"_id"`
	Email string `bson:"email"`
}

const kindClaim = "claim"

// applyClaim inserts the entry's claim; a duplicate means it was applied
// before.
func applyClaim(db *mongo.Database) store.Applier {
	return func(ctx context.Context, e *store.Entry) error {
		var c claim
		if err := bson.Unmarshal(e.State, &c); err != nil {
			return store.Discard(err)
		}
		_, err := db.Collection("claims").InsertOne(ctx, c)
		if err = store.Translate(err); errors.Is(err, store.ErrDuplicate) {
			return nil
		}
		return err
	}
}

func newOutbox(t *testing.T, pub store.Publisher) (*store.Outbox, *mongo.Database) {
	t.Helper()
	db := testkit.Mongo(t)
	o := store.NewOutbox(db, pub, testkit.Logger(t))
	o.Register(kindClaim, applyClaim(db))
	return o, db
}

// newEntry returns a claim entry for registration id. It is dated a second
// ago, so that Sweep with minAge 0 takes it.
func newEntry(t *testing.T, id string) store.Entry {
	t.Helper()
	env, err := events.New("test", events.RegistrationConfirmed, id, events.Registration{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	e, err := store.NewEntry(kindClaim, env, claim{ID: id, Email: id + "@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	e.CreatedAt = e.CreatedAt.Add(-time.Second)
	return e
}

func pending(t *testing.T, o *store.Outbox) int64 {
	t.Helper()
	n, err := o.Pending(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func claims(t *testing.T, db *mongo.Database) []string {
	t.Helper()
	ctx := ctxT(t)
	cur, err := db.Collection("claims").Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var all []claim
	if err := cur.All(ctx, &all); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range all {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestNewEntry(t *testing.T) {
	env, err := events.New("test", events.RegistrationConfirmed, "r1", events.Registration{ID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := store.NewEntry(kindClaim, env, claim{ID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := env.Marshal()
	if e.ID != env.ID || e.Kind != kindClaim || e.Subject != env.Type || string(e.Message) != string(body) {
		t.Errorf("NewEntry = %+v, want the envelope's id, type and body", e)
	}
	var c claim
	if err := bson.Unmarshal(e.State, &c); err != nil || c.ID != "r1" {
		t.Errorf("State decodes to %+v, %v; want claim r1", c, err)
	}
	if time.Since(e.CreatedAt) > time.Minute {
		t.Errorf("CreatedAt = %v, want now", e.CreatedAt)
	}
	if e, err := store.NewEntry(kindClaim, env, nil); err != nil || e.State != nil {
		t.Errorf("NewEntry with no state = %v, %v; want an entry without state", e.State, err)
	}
}

func TestWriteAppliesPublishesAndDeletes(t *testing.T) {
	pub := &fakePublisher{}
	o, db := newOutbox(t, pub)
	e := newEntry(t, "r1")
	if err := o.Write(ctxT(t), e); err != nil {
		t.Fatal(err)
	}
	if got := claims(t, db); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("claims = %v, want [r1]", got)
	}
	want := []published{{e.Subject, e.ID, e.Message}}
	if got := pub.calls(); len(got) != 1 || got[0].Subject != want[0].Subject || got[0].MsgID != want[0].MsgID || string(got[0].Body) != string(want[0].Body) {
		t.Errorf("published %+v, want %+v", got, want)
	}
	if n := pending(t, o); n != 0 {
		t.Errorf("outbox holds %d entries after a write, want 0", n)
	}
}

func TestWriteThroughNATS(t *testing.T) {
	b := testkit.StartNATS(t).Bus(t, events.StreamRegistration)
	ctx := ctxT(t)
	o, db := newOutbox(t, b)
	e := newEntry(t, "r1")
	if err := o.Write(ctx, e); err != nil {
		t.Fatal(err)
	}
	stream, err := b.JS.Stream(ctx, events.StreamRegistration)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, events.RegistrationConfirmed)
	if err != nil {
		t.Fatalf("nothing published on %s: %v", events.RegistrationConfirmed, err)
	}
	if msg.Header.Get("Nats-Msg-Id") != e.ID || string(msg.Data) != string(e.Message) {
		t.Errorf("stored message id %q body %s, want %q %s", msg.Header.Get("Nats-Msg-Id"), msg.Data, e.ID, e.Message)
	}
	if got := pending(t, o); got != 0 {
		t.Errorf("outbox holds %d entries, want 0", got)
	}

	// A relay that redoes an entry already published (a crash before the
	// delete) publishes it again, and NATS drops the repeat.
	if _, err := db.Collection(store.OutboxCollection).InsertOne(ctx, e); err != nil {
		t.Fatal(err)
	}
	if done, err := o.Sweep(ctx, 0, 10); err != nil || done != 1 {
		t.Fatalf("Sweep = %d, %v; want 1, nil", done, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after the replay, want 1", info.State.Msgs)
	}
	if got := claims(t, db); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("claims = %v, want [r1] once", got)
	}
}

func TestPublishFailureIsLeftToTheRelay(t *testing.T) {
	pub := &fakePublisher{fail: errors.New("nats: no servers available")}
	o, db := newOutbox(t, pub)
	ctx := ctxT(t)
	e := newEntry(t, "r1")
	if err := o.Write(ctx, e); err != nil {
		t.Fatalf("Write = %v; a failed publish must not fail the write once the change is made", err)
	}
	if got := claims(t, db); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("claims = %v, want [r1]: the change is made before the publish", got)
	}
	if n := pending(t, o); n != 1 {
		t.Fatalf("outbox holds %d entries after a failed publish, want 1", n)
	}

	// Still down: the relay keeps the entry.
	if done, err := o.Sweep(ctx, 0, 10); err != nil || done != 0 {
		t.Fatalf("Sweep with NATS down = %d, %v; want 0, nil", done, err)
	}
	if n := pending(t, o); n != 1 {
		t.Fatalf("outbox holds %d entries after a failed sweep, want 1", n)
	}

	pub.setFail(nil)
	if done, err := o.Sweep(ctx, 0, 10); err != nil || done != 1 {
		t.Fatalf("Sweep = %d, %v; want 1, nil", done, err)
	}
	if got := pub.ids(); !slices.Equal(got, []string{e.ID}) {
		t.Errorf("published %v, want [%s]", got, e.ID)
	}
	if n := pending(t, o); n != 0 {
		t.Errorf("outbox holds %d entries, want 0", n)
	}
}

func TestSweepFinishesACrashedWrite(t *testing.T) {
	pub := &fakePublisher{}
	o, db := newOutbox(t, pub)
	ctx := ctxT(t)
	// A crash right after step (a): the entry is recorded, nothing else.
	e := newEntry(t, "r1")
	if _, err := db.Collection(store.OutboxCollection).InsertOne(ctx, e); err != nil {
		t.Fatal(err)
	}
	if done, err := o.Sweep(ctx, 0, 10); err != nil || done != 1 {
		t.Fatalf("Sweep = %d, %v; want 1, nil", done, err)
	}
	if got := claims(t, db); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("claims = %v, want [r1]", got)
	}
	if got := pub.calls(); len(got) != 1 || got[0].MsgID != e.ID || got[0].Subject != e.Subject || string(got[0].Body) != string(e.Message) {
		t.Errorf("published %+v, want entry %s", got, e.ID)
	}
	if n := pending(t, o); n != 0 {
		t.Errorf("outbox holds %d entries, want 0", n)
	}
}

func TestSweepOldestFirstWithinLimitAndAge(t *testing.T) {
	pub := &fakePublisher{}
	o, db := newOutbox(t, pub)
	ctx := ctxT(t)
	// Ids made in the same millisecond do not sort by creation: name them.
	ids := []string{"01A", "01B", "01C"}
	for i, reg := range []string{"r1", "r2", "r3"} {
		e := newEntry(t, reg)
		e.ID = ids[i]
		if _, err := db.Collection(store.OutboxCollection).InsertOne(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	fresh := newEntry(t, "r4")
	fresh.CreatedAt = time.Now().UTC().Add(time.Minute)
	if _, err := db.Collection(store.OutboxCollection).InsertOne(ctx, fresh); err != nil {
		t.Fatal(err)
	}

	if done, err := o.Sweep(ctx, 0, 2); err != nil || done != 2 {
		t.Fatalf("Sweep(limit 2) = %d, %v; want 2, nil", done, err)
	}
	if got := pub.ids(); !slices.Equal(got, ids[:2]) {
		t.Errorf("first sweep published %v, want the two oldest %v", got, ids[:2])
	}
	if done, err := o.Sweep(ctx, time.Hour, 10); err != nil || done != 0 {
		t.Errorf("Sweep(minAge 1h) = %d, %v; want 0: every entry is younger", done, err)
	}
	if done, err := o.Sweep(ctx, 0, 10); err != nil || done != 1 {
		t.Fatalf("second Sweep = %d, %v; want 1 (the fresh entry is not due)", done, err)
	}
	if got := pub.ids(); !slices.Equal(got, ids) {
		t.Errorf("published %v, want %v", got, ids)
	}
	if got := claims(t, db); !slices.Equal(got, []string{"r1", "r2", "r3"}) {
		t.Errorf("claims = %v, want r1..r3", got)
	}
	if n := pending(t, o); n != 1 {
		t.Errorf("outbox holds %d entries, want the fresh one", n)
	}
}

func TestWriteDiscard(t *testing.T) {
	pub := &fakePublisher{}
	o, db := newOutbox(t, pub)
	errTaken := errors.New("slug gophercon is taken")
	o.Register("event", func(context.Context, *store.Entry) error {
		return store.Discard(fmt.Errorf("create event: %w", errTaken))
	})
	e := newEntry(t, "e1")
	e.Kind = "event"
	err := o.Write(ctxT(t), e)
	if !errors.Is(err, errTaken) {
		t.Fatalf("Write = %v, want the applier's error", err)
	}
	if got := pub.calls(); len(got) != 0 {
		t.Errorf("published %+v for a discarded entry, want nothing", got)
	}
	if n := pending(t, o); n != 0 {
		t.Errorf("outbox holds %d entries after a discard, want 0", n)
	}
	if got := claims(t, db); len(got) != 0 {
		t.Errorf("claims = %v, want none", got)
	}
}

func TestWriteTemporaryApplyErrorIsLeftToTheRelay(t *testing.T) {
	pub := &fakePublisher{}
	o, db := newOutbox(t, pub)
	ctx := ctxT(t)
	var down atomic.Bool
	down.Store(true)
	errDown := errors.New("counter update timed out")
	o.Register("flaky", func(ctx context.Context, e *store.Entry) error {
		if down.Load() {
			return errDown
		}
		return applyClaim(db)(ctx, e)
	})
	e := newEntry(t, "r1")
	e.Kind = "flaky"
	if err := o.Write(ctx, e); !errors.Is(err, errDown) || !errors.Is(err, store.ErrDeferred) {
		t.Fatalf("Write = %v, want ErrDeferred wrapping the applier's error", err)
	}
	if got := pub.calls(); len(got) != 0 {
		t.Errorf("published %+v before the change was made", got)
	}
	if n := pending(t, o); n != 1 {
		t.Fatalf("outbox holds %d entries, want 1 for the relay", n)
	}

	down.Store(false)
	if done, err := o.Sweep(ctx, 0, 10); err != nil || done != 1 {
		t.Fatalf("Sweep = %d, %v; want 1, nil", done, err)
	}
	if got := claims(t, db); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("claims = %v, want [r1]", got)
	}
	if got := pub.ids(); !slices.Equal(got, []string{e.ID}) {
		t.Errorf("published %v, want [%s]", got, e.ID)
	}
}

func TestApplierRewritesWhatIsPublished(t *testing.T) {
	pub := &fakePublisher{}
	o, _ := newOutbox(t, pub)
	// The seat ran out while the request was in flight: the registration is
	// waitlisted, not confirmed.
	o.Register("register", func(_ context.Context, e *store.Entry) error {
		env, err := events.NewWithID(e.ID, "test", events.RegistrationWaitlisted, "r1", events.Registration{ID: "r1", Status: events.StatusWaitlisted})
		if err != nil {
			return err
		}
		e.Subject = env.Type
		e.Message, err = env.Marshal()
		return err
	})
	e := newEntry(t, "r1")
	e.Kind = "register"
	if err := o.Write(ctxT(t), e); err != nil {
		t.Fatal(err)
	}
	got := pub.calls()
	if len(got) != 1 {
		t.Fatalf("published %d messages, want 1", len(got))
	}
	if got[0].Subject != events.RegistrationWaitlisted || got[0].MsgID != e.ID {
		t.Errorf("published on %s id %s, want %s id %s", got[0].Subject, got[0].MsgID, events.RegistrationWaitlisted, e.ID)
	}
	env, err := events.Parse(got[0].Body)
	if err != nil || env.Type != events.RegistrationWaitlisted {
		t.Errorf("published body is %+v, %v; want the rewritten waitlisted event", env, err)
	}
}

func TestUnknownKind(t *testing.T) {
	pub := &fakePublisher{}
	o, db := newOutbox(t, pub)
	ctx := ctxT(t)
	e := newEntry(t, "r1")
	e.Kind = "renamed-in-a-later-release"

	if err := o.Write(ctx, e); err == nil {
		t.Error("Write of an unregistered kind succeeded")
	}
	if n := pending(t, o); n != 0 {
		t.Errorf("Write of an unregistered kind left %d entries, want 0", n)
	}

	if _, err := db.Collection(store.OutboxCollection).InsertOne(ctx, e); err != nil {
		t.Fatal(err)
	}
	if done, err := o.Sweep(ctx, 0, 10); err != nil || done != 0 {
		t.Fatalf("Sweep = %d, %v; want 0, nil", done, err)
	}
	if n := pending(t, o); n != 1 {
		t.Errorf("outbox holds %d entries, want the unknown one kept", n)
	}
	if got := pub.calls(); len(got) != 0 {
		t.Errorf("published %+v, want nothing", got)
	}
}

func TestSweepDoesNotCountEntriesCutShort(t *testing.T) {
	pub := &fakePublisher{}
	o, db := newOutbox(t, pub)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	// The service shuts down while the relay applies an entry.
	o.Register("slow", func(ctx context.Context, _ *store.Entry) error {
		cancel()
		return ctx.Err()
	})
	e := newEntry(t, "r1")
	e.Kind = "slow"
	if _, err := db.Collection(store.OutboxCollection).InsertOne(ctx, e); err != nil {
		t.Fatal(err)
	}
	done, _ := o.Sweep(ctx, 0, 10)
	if done != 0 {
		t.Errorf("Sweep = %d, want 0: the entry was not finished", done)
	}
	if n := pending(t, o); n != 1 {
		t.Errorf("outbox holds %d entries, want 1", n)
	}
}

func TestRelay(t *testing.T) {
	pub := &fakePublisher{}
	o, db := newOutbox(t, pub)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- o.Relay(ctx, 20*time.Millisecond, 0) }()

	// Entries left behind while the relay runs are finished by a later sweep.
	e := newEntry(t, "r1")
	if _, err := db.Collection(store.OutboxCollection).InsertOne(ctxT(t), e); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if got := pub.ids(); !slices.Equal(got, []string{e.ID}) {
			return fmt.Errorf("published %v", got)
		}
		if n := pending(t, o); n != 0 {
			return fmt.Errorf("%d entries pending", n)
		}
		return nil
	})
	if got := claims(t, db); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("claims = %v, want [r1]", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Relay = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Relay did not return within 5s of cancel")
	}
}

// When the change is made but NATS is away, the relay must later publish
// what the applier announced without making the change again, and a sweep
// stops at the first failed publish instead of hammering a broker that is
// down.
func TestRelayPublishesAppliedEntriesWithoutReapplying(t *testing.T) {
	pub := &fakePublisher{}
	o, _ := newOutbox(t, pub)
	var applied atomic.Int32
	o.Register("register", func(_ context.Context, e *store.Entry) error {
		applied.Add(1)
		env, err := events.NewWithID(e.ID, "test", events.RegistrationDuplicateAttempt, "r1", events.Registration{ID: "r1"})
		if err != nil {
			return err
		}
		e.Subject = env.Type
		e.Message, err = env.Marshal()
		return err
	})
	pub.setFail(errors.New("nats: not connected"))
	for _, id := range []string{"r1", "r2"} {
		e := newEntry(t, id)
		e.Kind = "register"
		if err := o.Write(ctxT(t), e); err != nil {
			t.Fatal(err)
		}
	}
	before := pub.tries()
	// A negative age: entries written this very millisecond are swept too.
	if n, err := o.Sweep(ctxT(t), -time.Minute, 10); err != nil || n != 0 {
		t.Fatalf("sweep while NATS is down: %d, %v", n, err)
	}
	if got := pub.tries() - before; got != 1 {
		t.Fatalf("the sweep tried %d publishes while NATS was down, want 1 (stop at the first failure)", got)
	}
	if got := applied.Load(); got != 2 {
		t.Fatalf("applier ran %d times with NATS down, want 2 (once per write)", got)
	}

	pub.setFail(nil)
	if n, err := o.Sweep(ctxT(t), -time.Minute, 10); err != nil || n != 2 {
		t.Fatalf("sweep after NATS came back: %d, %v", n, err)
	}
	if got := applied.Load(); got != 2 {
		t.Errorf("the relay applied again: %d runs, want 2", got)
	}
	for _, c := range pub.calls() {
		if c.Subject != events.RegistrationDuplicateAttempt {
			t.Errorf("relay published %s, want the rewritten %s", c.Subject, events.RegistrationDuplicateAttempt)
		}
	}
	if pending(t, o) != 0 {
		t.Fatal("outbox not empty")
	}
}

// tooBig refuses one message, as NATS refuses one over its max payload.
type tooBig struct {
	fakePublisher
	refuse string
}

func (p *tooBig) Publish(ctx context.Context, subject, msgID string, body []byte) error {
	if msgID == p.refuse {
		return errors.New("nats: maximum payload exceeded")
	}
	return p.fakePublisher.Publish(ctx, subject, msgID, body)
}

func TestSweepSkipsAnEntryThatCannotBePublished(t *testing.T) {
	pub := &tooBig{refuse: "01A"}
	o, db := newOutbox(t, pub)
	ctx := ctxT(t)
	for i, reg := range []string{"r1", "r2"} {
		e := newEntry(t, reg)
		e.ID = []string{"01A", "01B"}[i]
		if _, err := db.Collection(store.OutboxCollection).InsertOne(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if done, err := o.Sweep(ctx, 0, 10); err != nil || done != 1 {
		t.Fatalf("Sweep = %d, %v; want 1: the entry behind the one NATS refuses goes out", done, err)
	}
	if got := pub.ids(); !slices.Equal(got, []string{"01B"}) {
		t.Fatalf("published %v, want [01B]", got)
	}
	// NATS down: the sweep stops at the first entry, as before.
	pub.refuse = ""
	pub.setFail(errors.New("nats: not connected"))
	if done, _ := o.Sweep(ctx, 0, 10); done != 0 || pub.tries() != 2 {
		t.Fatalf("with NATS down: %d done after %d tries, want 0 after 1 more", done, pub.tries())
	}
}
