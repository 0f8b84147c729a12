package notification

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestReleasePublishedWhileDownIsConsumedOnce(t *testing.T) {
	r := startRestartable(t)
	r.stop()

	rel := agendaRelease("evt-down", 1)
	env := r.publishRelease(rel)
	// Nobody takes it while the service is down: it waits in the stream.
	testkit.Eventually(t, 5*time.Second, func() error {
		if ci := r.releaseConsumer(); ci.Delivered.Consumer != 0 || ci.NumPending != 1 {
			return fmt.Errorf("while down: %d delivered, %d pending; want 0, 1", ci.Delivered.Consumer, ci.NumPending)
		}
		return nil
	})

	r.up()
	got := r.waitRelease(rel.EventID, 1)
	testkit.WaitIdle(t, r.bus.JS, events.StreamAgenda, releasesConsumer)
	ci := r.releaseConsumer()
	if ci.Delivered.Consumer != 1 || ci.AckFloor.Consumer != 1 || ci.NumPending != 0 || ci.NumAckPending != 0 || ci.NumRedelivered != 0 {
		t.Errorf("consumer: %d delivered, %d acked, %d pending, %d awaiting ack, %d redelivered; want 1, 1, 0, 0, 0",
			ci.Delivered.Consumer, ci.AckFloor.Consumer, ci.NumPending, ci.NumAckPending, ci.NumRedelivered)
	}
	if n := r.countReleases(rel.EventID); n != 1 {
		t.Errorf("%d release documents, want 1", n)
	}
	if got.ID != "evt-down:1" || got.MsgID != env.ID {
		t.Errorf("stored _id, msg_id = %s, %s; want evt-down:1, %s", got.ID, got.MsgID, env.ID)
	}
	if got.ReceivedAt.Before(env.Time.Truncate(time.Millisecond)) {
		t.Errorf("received_at %s is before the release was published (%s)", got.ReceivedAt, env.Time)
	}
	sameRelease(t, got.Release, rel)
}

func TestReleaseReplayStoredOnce(t *testing.T) {
	r := startRestartable(t)
	rel := agendaRelease("evt-replay", 1)

	// The same release in two messages with distinct ids (so NATS keeps
	// both), as an outbox relay's replay after the duplicate window is.
	first := r.publishRelease(rel)
	r.publishRelease(rel)
	testkit.WaitIdle(t, r.bus.JS, events.StreamAgenda, releasesConsumer)

	if ci := r.releaseConsumer(); ci.Delivered.Consumer != 2 || ci.NumRedelivered != 0 {
		t.Errorf("consumer: %d delivered, %d redelivered; want 2 (each message once), 0", ci.Delivered.Consumer, ci.NumRedelivered)
	}
	if n := r.countReleases(rel.EventID); n != 1 {
		t.Errorf("%d release documents, want 1", n)
	}
	got := r.waitRelease(rel.EventID, 1)
	if got.MsgID != first.ID {
		t.Errorf("stored from msg %s, want the first, %s", got.MsgID, first.ID)
	}
	sameRelease(t, got.Release, rel)
}

func TestReleaseOlderVersionAfterNewer(t *testing.T) {
	r := startRestartable(t)
	ctx := context.Background()
	v1, v2 := agendaRelease("evt-order", 1), agendaRelease("evt-order", 2)

	r.publishRelease(v2)
	r.waitRelease(v2.EventID, 2)
	r.publishRelease(v1) // late: the agenda published it first
	r.waitRelease(v1.EventID, 1)
	testkit.WaitIdle(t, r.bus.JS, events.StreamAgenda, releasesConsumer)

	if n := r.countReleases(v1.EventID); n != 2 {
		t.Errorf("%d release documents, want 2", n)
	}
	for _, want := range []events.Release{v1, v2} {
		got, err := r.replica.release(ctx, want.EventID, want.Version)
		if err != nil {
			t.Fatal(err)
		}
		sameRelease(t, got.Release, want)
	}
	latest, err := r.replica.latestRelease(ctx, v1.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if latest.Version != 2 || latest.ID != "evt-order:2" {
		t.Errorf("latest release = %s (version %d), want evt-order:2", latest.ID, latest.Version)
	}

	if _, err := r.replica.release(ctx, v1.EventID, 3); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("release 3: err = %v, want not found", err)
	}
	if _, err := r.replica.latestRelease(ctx, "evt-none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("latest release of an event without releases: err = %v, want not found", err)
	}
}

func TestReleasePayloads(t *testing.T) {
	r := startRestartable(t)

	withExtra, err := json.Marshal(agendaRelease("evt-extra", 1))
	if err != nil {
		t.Fatal(err)
	}
	withExtra = append(withExtra[:len(withExtra)-1], `,"audience":{"rooms":["A"]},"v2_only":true}`...)
	cases := []struct {
		name   string
		data   string
		stored string // the _id it is stored under; "" when dead-lettered
	}{
		{"unknown fields are ignored", string(withExtra), "evt-extra:1"},
		{"undecodable", `{"event_id":"evt-bad","version":"two"}`, ""},
		{"not an object", `["evt-list",1]`, ""},
		{"no version", `{"event_id":"evt-nover","sessions":[]}`, ""},
		{"no event", `{"version":1}`, ""},
	}
	var dead []string
	for _, c := range cases {
		env, err := events.New("plenary/agenda", events.AgendaReleasePublished, "", json.RawMessage(c.data))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		r.publishEnvelope(env)
		if c.stored == "" {
			dead = append(dead, env.ID)
		}
	}
	testkit.WaitIdle(t, r.bus.JS, events.StreamAgenda, releasesConsumer)

	var inDLQ []string
	for _, msg := range r.messages(events.StreamDLQ) {
		if want := events.DLQSubject(events.StreamAgenda, releasesConsumer); msg.Subject != want {
			t.Errorf("dead letter on %s, want %s", msg.Subject, want)
		}
		if msg.Header.Get(bus.HeaderReason) == "" {
			t.Errorf("dead letter %s without a reason", msg.Subject)
		}
		env, err := events.Parse(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		inDLQ = append(inDLQ, env.ID)
	}
	slices.Sort(dead)
	slices.Sort(inDLQ)
	if !slices.Equal(inDLQ, dead) {
		t.Errorf("dead letters %v, want %v", inDLQ, dead)
	}
	n, err := r.replica.coll.CountDocuments(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.replica.release(context.Background(), "evt-extra", 1); n != 1 || err != nil {
		t.Errorf("%d releases stored (want 1), evt-extra:1: %v", n, err)
	}

	// Types this code does not know are acked and left alone.
	env, err := events.New("plenary/agenda", "agenda.v1.release.retracted", "", agendaRelease("evt-future", 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.replica.handleRelease(context.Background(), bus.Delivery{Envelope: env, Subject: env.Type, Attempt: 1}); err != nil {
		t.Errorf("unknown type: %v", err)
	}
	if _, err := r.replica.release(context.Background(), "evt-future", 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown type stored a release (err = %v)", err)
	}
}

// restartable runs the notification service so that a test can stop it and
// run it again against the same NATS and the same database, as a deploy or
// a crash does. Its bus plays the agenda service.
type restartable struct {
	*harness
	stop    func()
	replica *releaseReplica // the service's releases, read directly
}

func startRestartable(t *testing.T) *restartable {
	t.Helper()
	nats := testkit.StartNATS(t)
	h := &harness{t: t, cfg: testConfig(t, nats.URL)}
	// No streams of its own: the service must create AGENDA.
	h.bus = nats.Bus(t)
	r := &restartable{harness: h}
	r.up()
	r.replica = newReleaseReplica(h.db(), testkit.Logger(t))
	return r
}

// up starts the service on a fresh listener and waits until it answers and
// its release consumer exists.
func (r *restartable) up() {
	r.t.Helper()
	ln, base := testkit.Listen(r.t)
	r.cfg.Listener, r.base = ln, base
	cfg := r.cfg
	r.stop = testkit.Serve(r.t, func(ctx context.Context) error { return Run(ctx, cfg, testkit.Logger(r.t)) })
	testkit.Eventually(r.t, 10*time.Second, func() error {
		if status, _ := r.get("/healthz", ""); status != http.StatusOK {
			return fmt.Errorf("/healthz: %d", status)
		}
		_, err := r.bus.JS.Consumer(context.Background(), events.StreamAgenda, releasesConsumer)
		return err
	})
}

// publishRelease publishes rel in a fresh message, as the agenda's outbox
// would.
func (r *restartable) publishRelease(rel events.Release) events.Envelope {
	r.t.Helper()
	env, err := events.New("plenary/agenda", events.AgendaReleasePublished, rel.EventID, rel)
	if err != nil {
		r.t.Fatal(err)
	}
	r.publishEnvelope(env)
	return env
}

// releaseConsumer returns the service's durable consumer of releases.
func (r *restartable) releaseConsumer() *jetstream.ConsumerInfo {
	r.t.Helper()
	ctx := context.Background()
	c, err := r.bus.JS.Consumer(ctx, events.StreamAgenda, releasesConsumer)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return info
}

// waitRelease waits until the service holds the event's release version.
func (r *restartable) waitRelease(eventID string, version int) releaseRecord {
	r.t.Helper()
	var rec releaseRecord
	testkit.Eventually(r.t, 10*time.Second, func() (err error) {
		rec, err = r.replica.release(context.Background(), eventID, version)
		return err
	})
	return rec
}

func (r *restartable) countReleases(eventID string) int64 {
	r.t.Helper()
	n, err := r.replica.coll.CountDocuments(context.Background(), bson.D{{Key: "event_id", Value: eventID}})
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// sameRelease fails the test unless got is want, as the agenda published it.
func sameRelease(t *testing.T, got, want events.Release) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Errorf("stored release differs from the published one:\n got %s\nwant %s", g, w)
	}
}

// agendaRelease is release version (1 or 2) of a morning with two panels in
// Vienna; version 2 moves the first panel to another room and time.
func agendaRelease(eventID string, version int) events.Release {
	at := func(h, m int) time.Time { return time.Date(2020, 11, 9, h, m, 0, 0, time.UTC) }
	published := at(7, 0).Add(-24 * time.Hour)
	v1 := []events.Session{
		{ID: "s-open", Title: "Opening panel", StartsAt: at(8, 0), EndsAt: at(9, 0), Room: "Festsaal",
			Format: events.FormatHybrid, Speakers: []events.Speaker{{Name: "Grace Hopper", Affiliation: "Navy"}},
			JoinURL: "https://meet.plenary.test/open", Sequence: 1, ChangedAt: published},
		{ID: "s-data", Title: "Data sovereignty", StartsAt: at(9, 30), EndsAt: at(10, 30), Room: "Salon",
			Format: events.FormatInPerson, Sequence: 1, ChangedAt: published},
	}
	rel := events.Release{
		EventID: eventID, Slug: "roundtable", Title: "Vienna Roundtable", Timezone: "Europe/Vienna",
		Version: 1, Note: "first agenda", PublishedAt: published, PublishedBy: "token-1",
		Sessions: v1, Changes: events.Diff(nil, v1),
	}
	if version == 1 {
		return rel
	}
	v2 := slices.Clone(v1)
	published = published.Add(time.Hour)
	v2[0].Room, v2[0].StartsAt, v2[0].EndsAt = "Salon", at(10, 45), at(11, 45)
	v2[0].Sequence, v2[0].ChangedAt = version, published
	events.SortSessions(v2)
	rel.Version, rel.Previous, rel.Note, rel.PublishedAt = version, version-1, "opening moved", published
	rel.Sessions, rel.Changes = v2, events.Diff(v1, v2)
	return rel
}
