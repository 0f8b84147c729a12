package mailer

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/store"
)

// legacyCollection is where mailers before MAIL_SENT recorded the jobs they
// sent (one document per job, _id = job id).
const legacyCollection = "sent"

// legacySent is the old sent collection, read as a fallback: a job sent
// and recorded by an older mailer but not acked (a crash, a status publish
// that failed, an old replica during a rolling upgrade) is redelivered to
// this one, and MAIL_SENT has no record of it. Nothing writes the
// collection any more; retire empties it as its records age past the
// longest a job can be redelivered, then drops it, and the fallback ends.
// Until then each redelivered job MAIL_SENT does not know costs its share
// of one query, as every redelivered job did before.
type legacySent struct {
	coll *mongo.Collection
	log  *slog.Logger
	gone atomic.Bool
}

// openLegacySent returns the old collection, or nil when db has none.
func openLegacySent(ctx context.Context, db *mongo.Database, log *slog.Logger) (*legacySent, error) {
	names, err := db.ListCollectionNames(ctx, bson.D{{Key: "name", Value: legacyCollection}})
	if err != nil {
		return nil, fmt.Errorf("mailer: look for the old sent collection: %w", store.Translate(err))
	}
	if len(names) == 0 {
		return nil, nil
	}
	log.Info("sent ledger: reading the old sent collection as a fallback until it is retired")
	return &legacySent{coll: db.Collection(legacyCollection), log: log}, nil
}

// sentAmong returns which of ids the old collection records, with one query.
func (s *legacySent) sentAmong(ctx context.Context, ids []string) (map[string]bool, error) {
	found := make(map[string]bool, len(ids))
	if len(ids) == 0 || s.gone.Load() {
		return found, nil
	}
	cur, err := s.coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("look up %d sent jobs in the old collection: %w", len(ids), store.Translate(err))
	}
	var recs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &recs); err != nil {
		return nil, fmt.Errorf("look up %d sent jobs in the old collection: %w", len(ids), store.Translate(err))
	}
	for _, r := range recs {
		found[r.ID] = true
	}
	return found, nil
}

// retire deletes the records older than keep (as long as a job can come
// back) every hour until ctx ends or none is left; then it drops the
// collection. The collection empties only keep after the last record an
// old mailer wrote, so a rolling upgrade's old replicas are long gone.
func (s *legacySent) retire(ctx context.Context, keep time.Duration) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		if s.prune(ctx, keep) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// prune deletes the records older than keep and drops the collection once
// it is empty. It reports whether the collection is gone.
func (s *legacySent) prune(ctx context.Context, keep time.Duration) bool {
	res, err := s.coll.DeleteMany(ctx, bson.D{{Key: "sent_at", Value: bson.D{{Key: "$lt", Value: time.Now().Add(-keep)}}}})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("old sent collection: prune failed", "err", err)
		}
		return false
	}
	if res.DeletedCount > 0 {
		s.log.Info("old sent collection: pruned", "deleted", res.DeletedCount, "older_than", keep.String())
	}
	left, err := s.coll.EstimatedDocumentCount(ctx)
	if err != nil || left > 0 {
		return false
	}
	s.gone.Store(true)
	if err := s.coll.Drop(ctx); err != nil {
		s.log.Warn("old sent collection: drop failed", "err", err)
		return true
	}
	s.log.Info("old sent collection: empty and dropped; the sent ledger is MAIL_SENT alone")
	return true
}
