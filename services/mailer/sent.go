package mailer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// sentLog records the jobs the SMTP server accepted, one inserted document per
// job: inserts stay cheap however large the collection grows.
type sentLog struct {
	coll *mongo.Collection
}

type sentRecord struct {
	ID      string    `bson:"_id"`
	EventID string    `bson:"event_id,omitempty"`
	SentAt  time.Time `bson:"sent_at"`
}

func (s *sentLog) record(ctx context.Context, job events.MailJob, at time.Time) error {
	_, err := s.coll.InsertOne(ctx, sentRecord{ID: job.ID, EventID: job.EventID, SentAt: at})
	if err = store.Translate(err); err != nil && !errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("record sent job[%s]: %w", job.ID, err)
	}
	return nil
}

func (s *sentLog) has(ctx context.Context, id string) (bool, error) {
	err := s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Err()
	switch err = store.Translate(err); {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("look up sent job[%s]: %w", id, err)
}
