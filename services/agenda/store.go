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
type history struct {
	coll *mongo.Collection

	mu    sync.Mutex
	heads map[string]int // event → highest n seen: a hint, never trusted alone
}

func newHistory(coll *mongo.Collection) *history {
	return &history{coll: coll, heads: map[string]int{}}
}

func versionID(eventID string, n int) string { return eventID + ":" + strconv.Itoa(n) }

// head returns the highest n stored for event (0 for none). It starts from
// the hint and probes n+1, n+2 … by _id, which FerretDB pushes down to SQL;
// only the first call per event and process sorts the event's documents.
func (h *history) head(ctx context.Context, eventID string) (int, error) {
	h.mu.Lock()
	n, ok := h.heads[eventID]
	h.mu.Unlock()
	if !ok {
		var doc struct {
			N int `bson:"n"`
		}
		err := h.coll.FindOne(ctx, bson.D{{Key: "event_id", Value: eventID}},
			options.FindOne().SetSort(bson.D{{Key: "n", Value: -1}}).SetProjection(bson.D{{Key: "n", Value: 1}})).Decode(&doc)
		if err = store.Translate(err); err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
		n = doc.N
	}
	for {
		err := h.coll.FindOne(ctx, bson.D{{Key: "_id", Value: versionID(eventID, n+1)}},
			options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
		if err = store.Translate(err); errors.Is(err, store.ErrNotFound) {
			break
		} else if err != nil {
			return 0, err
		}
		n++
	}
	h.seen(eventID, n)
	return n, nil
}

func (h *history) seen(eventID string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n > h.heads[eventID] {
		h.heads[eventID] = n
	}
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
	for {
		n, err := d.head(ctx, eventID)
		if err != nil || n == 0 {
			return &draft{EventID: eventID}, err
		}
		var doc draft
		err = d.get(ctx, eventID, n, &doc)
		if errors.Is(err, store.ErrNotFound) {
			continue // pruned under our feet by a writer far ahead: look again
		}
		return &doc, err
	}
}

// commit inserts revision next.N. A duplicate key means another edit got
// there first: store.ErrDuplicate, and the caller starts over.
func (d drafts) commit(ctx context.Context, next *draft) error {
	next.ID = versionID(next.EventID, next.N)
	if _, err := d.coll.InsertOne(ctx, next); err != nil {
		return fmt.Errorf("draft %s: %w", next.ID, store.Translate(err))
	}
	d.seen(next.EventID, next.N)
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

func newReleases(coll *mongo.Collection) *releases {
	return &releases{history: newHistory(coll), cache: map[string]*events.Release{}}
}

// latest returns the event's newest release, or store.ErrNotFound.
func (r *releases) latest(ctx context.Context, eventID string) (*events.Release, error) {
	n, err := r.head(ctx, eventID)
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
	n, err := r.head(ctx, eventID)
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
