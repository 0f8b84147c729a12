package agenda

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// Drafts and releases are both version histories per event: documents with
// _id "<event>:<n>" that are only ever inserted. Inserting n+1 is the fence
// that orders concurrent writers (FerretDB has no atomic conditional
// update, but an insert against the unique _id is atomic there as on
// MongoDB): the loser gets a duplicate key, reads the new head and tries
// again, so no edit is lost and no version is given twice.
//
// Which n is the newest is kept in a small "heads" collection, one
// document per event and history, raised after each insert. It is a floor,
// not the truth (two writers may raise it out of order, a crash may skip a
// raise): writers probe n+1, n+2 … by _id from it before they build on
// it. Readers of releases take it as it is, which is right once the
// publish has answered: it raises the head before it does.
type history struct {
	coll  *mongo.Collection
	heads *mongo.Collection
	kind  string // "draft" or "release": the heads document's prefix
}

func newHistory(db *mongo.Database, coll, kind string) *history {
	return &history{coll: db.Collection(coll), heads: db.Collection("heads"), kind: kind}
}

func versionID(eventID string, n int) string { return eventID + ":" + strconv.Itoa(n) }

func (h *history) headID(eventID string) string { return h.kind + ":" + eventID }

// floor is the head as recorded, or -1 when none is: histories written
// before heads existed, which head then finds by sorting.
func (h *history) floor(ctx context.Context, eventID string) (int, error) {
	var doc struct {
		N int `bson:"n"`
	}
	err := store.Translate(h.heads.FindOne(ctx, bson.D{{Key: "_id", Value: h.headID(eventID)}}).Decode(&doc))
	if errors.Is(err, store.ErrNotFound) {
		return -1, nil
	}
	return doc.N, err
}

// sorted finds the highest n by sorting the event's documents: a scan, for
// when the recorded head cannot be trusted.
func (h *history) sorted(ctx context.Context, eventID string) (int, error) {
	var doc struct {
		N int `bson:"n"`
	}
	err := h.coll.FindOne(ctx, bson.D{{Key: "event_id", Value: eventID}},
		options.FindOne().SetSort(bson.D{{Key: "n", Value: -1}}).SetProjection(bson.D{{Key: "n", Value: 1}})).Decode(&doc)
	if err = store.Translate(err); err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	return doc.N, nil
}

// head returns the highest n stored for the event (0 for none), probing
// past the recorded head.
func (h *history) head(ctx context.Context, eventID string) (int, error) {
	n, err := h.floor(ctx, eventID)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		if n, err = h.sorted(ctx, eventID); err != nil {
			return 0, err
		}
	}
	for {
		err := h.coll.FindOne(ctx, bson.D{{Key: "_id", Value: versionID(eventID, n+1)}},
			options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
		if err = store.Translate(err); errors.Is(err, store.ErrNotFound) {
			return n, nil
		} else if err != nil {
			return 0, err
		}
		n++
	}
}

// raise records n as the event's head unless a higher one is recorded. The
// replace is not atomic on FerretDB, so it reads back and tries again when
// a writer with a lower n got in between.
func (h *history) raise(ctx context.Context, eventID string, n int) error {
	for range 3 {
		_, err := h.heads.ReplaceOne(ctx,
			bson.D{{Key: "_id", Value: h.headID(eventID)}, {Key: "n", Value: bson.D{{Key: "$lt", Value: n}}}},
			bson.D{{Key: "_id", Value: h.headID(eventID)}, {Key: "n", Value: n}}, options.Replace().SetUpsert(true))
		if err = store.Translate(err); err != nil && !errors.Is(err, store.ErrDuplicate) {
			return fmt.Errorf("raise the head of %s: %w", h.headID(eventID), err)
		}
		got, err := h.floor(ctx, eventID)
		if err != nil || got >= n {
			return err
		}
	}
	return nil
}

// get decodes version n of event into v.
func (h *history) get(ctx context.Context, eventID string, n int, v any) error {
	return store.Translate(h.coll.FindOne(ctx, bson.D{{Key: "_id", Value: versionID(eventID, n)}}).Decode(v))
}

// draft is one revision of an event's draft agenda: every edit inserts the
// whole draft anew (an agenda is small; the history is pruned).
type draft struct {
	ID       string           `bson:"_id"`
	EventID  string           `bson:"event_id"`
	N        int              `bson:"n"`
	Sessions []events.Session `bson:"sessions"`
	By       string           `bson:"by"`
	At       time.Time        `bson:"at"`
}

// keepDrafts is how many draft revisions stay per event.
const keepDrafts = 20

type drafts struct{ *history }

// latest returns the event's newest draft (revision 0, empty, if none).
func (d drafts) latest(ctx context.Context, eventID string) (*draft, error) {
	n, err := d.head(ctx, eventID)
	for range attempts {
		if err != nil || n == 0 {
			return &draft{EventID: eventID}, err
		}
		var doc draft
		err = d.get(ctx, eventID, n, &doc)
		if !errors.Is(err, store.ErrNotFound) {
			return &doc, err
		}
		// Pruned: the recorded head lagged far behind writers elsewhere.
		n, err = d.sorted(ctx, eventID)
	}
	return nil, errBusy
}

// commit inserts revision next.N. A duplicate key means another edit got
// there first: store.ErrDuplicate, and the caller starts over.
func (d drafts) commit(ctx context.Context, next *draft) error {
	next.ID = versionID(next.EventID, next.N)
	if _, err := d.coll.InsertOne(ctx, next); err != nil {
		return fmt.Errorf("draft %s: %w", next.ID, store.Translate(err))
	}
	if err := d.raise(ctx, next.EventID, next.N); err != nil {
		return err
	}
	if old := next.N - keepDrafts; old > 0 {
		// Best effort: a revision left behind costs space, not correctness.
		_, _ = d.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: versionID(next.EventID, old)}})
	}
	return nil
}

// releaseDoc is a stored release. PublishID is the id of the event that
// announces it, which tells the outbox relay whether a stored version is
// its own or another publisher's.
type releaseDoc struct {
	ID             string `bson:"_id"`
	N              int    `bson:"n"`
	PublishID      string `bson:"publish_id"`
	events.Release `bson:",inline"`
}

// releases are immutable once stored, so they are cached without expiry.
type releases struct {
	*history
	cmu   sync.Mutex
	cache map[string]*events.Release
}

const releaseCacheSize = 512

func newReleases(db *mongo.Database) *releases {
	return &releases{history: newHistory(db, "releases", "release"), cache: map[string]*events.Release{}}
}

// published is the number of the event's newest release as recorded: what
// readers see (writers probe further with head).
func (r *releases) published(ctx context.Context, eventID string) (int, error) {
	n, err := r.floor(ctx, eventID)
	if err != nil || n >= 0 {
		return max(n, 0), err
	}
	if n, err = r.sorted(ctx, eventID); err != nil {
		return 0, err
	}
	return n, r.raise(ctx, eventID, n)
}

// latest returns the event's newest release, or store.ErrNotFound; fresh
// probes past the recorded head, as a publish must.
func (r *releases) latest(ctx context.Context, eventID string, fresh bool) (*events.Release, error) {
	n, err := r.published(ctx, eventID)
	if fresh && err == nil {
		n, err = r.head(ctx, eventID)
	}
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, store.ErrNotFound
	}
	return r.version(ctx, eventID, n)
}

// version returns release n of event, or store.ErrNotFound. Callers must
// not modify it.
func (r *releases) version(ctx context.Context, eventID string, n int) (*events.Release, error) {
	id := versionID(eventID, n)
	r.cmu.Lock()
	rel, ok := r.cache[id]
	r.cmu.Unlock()
	if ok {
		return rel, nil
	}
	var doc releaseDoc
	if err := r.get(ctx, eventID, n, &doc); err != nil {
		return nil, err
	}
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if len(r.cache) >= releaseCacheSize {
		clear(r.cache)
	}
	r.cache[id] = &doc.Release
	return &doc.Release, nil
}

// all returns every release of event, oldest first.
func (r *releases) all(ctx context.Context, eventID string) ([]*events.Release, error) {
	n, err := r.published(ctx, eventID)
	if err != nil {
		return nil, err
	}
	out := make([]*events.Release, 0, n)
	for v := 1; v <= n; v++ {
		rel, err := r.version(ctx, eventID, v)
		if err != nil {
			return nil, fmt.Errorf("release %d: %w", v, err)
		}
		out = append(out, rel)
	}
	return out, nil
}
