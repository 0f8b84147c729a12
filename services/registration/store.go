package registration

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/store"
)

// regStore is the service's MongoDB state: events, registrations and seat
// counters. Registrations only grow by inserts on the hot path.
type regStore struct {
	events        *mongo.Collection
	registrations *mongo.Collection
	seats         *mongo.Collection
	attendance    *mongo.Collection
	holds         *mongo.Collection
	cursor        *slotCursor
}

func newStore(db *mongo.Database) *regStore {
	return &regStore{
		events:        db.Collection("events"),
		registrations: db.Collection("registrations"),
		seats:         db.Collection("seats"),
		attendance:    db.Collection("attendance"),
		holds:         db.Collection("holds"),
		cursor:        newSlotCursor(),
	}
}

func (s *regStore) ensureIndexes(ctx context.Context) error {
	return store.EnsureIndexes(ctx, s.events.Database(),
		store.Index{Collection: "events", Keys: bson.D{{Key: "slug", Value: 1}}, Unique: true},
		store.Index{Collection: "registrations", Keys: bson.D{{Key: "email_key", Value: 1}}, Unique: true},
		store.Index{Collection: "registrations", Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "_id", Value: 1}}},
		store.Index{Collection: "seats", Keys: bson.D{{Key: "slot", Value: 1}}, Unique: true},
		store.Index{Collection: "seats", Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "mode", Value: 1}}},
		store.Index{Collection: "holds", Keys: bson.D{{Key: "email_key", Value: 1}}, Unique: true},
	)
}

func (s *regStore) eventByID(ctx context.Context, id string) (*Event, error) {
	return findOne[Event](ctx, s.events, bson.D{{Key: "_id", Value: id}})
}

func (s *regStore) eventBySlug(ctx context.Context, slug string) (*Event, error) {
	return findOne[Event](ctx, s.events, bson.D{{Key: "slug", Value: slug}})
}

func (s *regStore) listEvents(ctx context.Context) ([]Event, error) {
	cur, err := s.events.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "starts_at", Value: -1}}).SetLimit(500))
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	out := []Event{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

func (s *regStore) registrationByID(ctx context.Context, id string) (*Registration, error) {
	return findOne[Registration](ctx, s.registrations, bson.D{{Key: "_id", Value: id}})
}

func (s *regStore) registrationByEmailKey(ctx context.Context, key string) (*Registration, error) {
	return findOne[Registration](ctx, s.registrations, bson.D{{Key: "email_key", Value: key}})
}

// insertRegistration inserts r. Inserting the same registration again is
// not an error; another active registration with the same address is
// errDuplicateEmail.
func (s *regStore) insertRegistration(ctx context.Context, r *Registration) error {
	_, err := s.registrations.InsertOne(ctx, r)
	if err = store.Translate(err); !errors.Is(err, store.ErrDuplicate) {
		return err
	}
	existing, ferr := s.registrationByID(ctx, r.ID)
	if ferr == nil && existing != nil {
		return nil // our own insert, replayed
	}
	if ferr != nil && !errors.Is(ferr, store.ErrNotFound) {
		return ferr
	}
	return errDuplicateEmail
}

var errDuplicateEmail = errors.New("already registered with this email address")

func findOne[T any](ctx context.Context, coll *mongo.Collection, filter bson.D) (*T, error) {
	var v T
	if err := coll.FindOne(ctx, filter).Decode(&v); err != nil {
		return nil, store.Translate(err)
	}
	return &v, nil
}
