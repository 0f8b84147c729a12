package registration

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/store"
)

// regStore is the service's MongoDB state: events, registrations, the
// decider's journal and attendance. Registrations grow by batched inserts
// on the hot path; only the decider writes them.
type regStore struct {
	events        *mongo.Collection
	registrations *mongo.Collection
	db            *mongo.Database // the journal's collections (journalOf)
	attendance    *mongo.Collection
}

func newStore(db *mongo.Database) *regStore {
	return &regStore{
		events:        db.Collection("events"),
		registrations: db.Collection("registrations"),
		db:            db,
		attendance:    db.Collection("attendance"),
	}
}

// ensureIndexes creates the indexes. Two are the decider's fences: one live
// registration per address and event (email_key), one confirmed
// registration per seat number and mode (seat_key).
func (s *regStore) ensureIndexes(ctx context.Context) error {
	if err := s.migrateSeatKeys(ctx); err != nil {
		return err
	}
	return store.EnsureIndexes(ctx, s.events.Database(),
		store.Index{Collection: "events", Keys: bson.D{{Key: "slug", Value: 1}}, Unique: true},
		store.Index{Collection: "registrations", Keys: bson.D{{Key: "email_key", Value: 1}}, Unique: true},
		store.Index{Collection: "registrations", Keys: bson.D{{Key: "seat_key", Value: 1}}, Unique: true},
		store.Index{Collection: "registrations", Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "_id", Value: 1}}},
	)
}

// registrationsOf returns every registration of an event.
func (s *regStore) registrationsOf(ctx context.Context, eventID string) ([]Registration, error) {
	cur, err := s.registrations.Find(ctx, bson.D{{Key: "event_id", Value: eventID}})
	if err != nil {
		return nil, fmt.Errorf("registrations of %s: %w", eventID, err)
	}
	var out []Registration
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("registrations of %s: %w", eventID, err)
	}
	return out, nil
}

// allEvents returns every event.
func (s *regStore) allEvents(ctx context.Context) ([]Event, error) {
	cur, err := s.events.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	var out []Event
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return out, nil
}

// eachRegistration calls f with every registration of every event.
func (s *regStore) eachRegistration(ctx context.Context, f func(Registration)) error {
	cur, err := s.registrations.Find(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("registrations: %w", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var r Registration
		if err := cur.Decode(&r); err != nil {
			return fmt.Errorf("registrations: %w", err)
		}
		f(r)
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("registrations: %w", err)
	}
	return nil
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

func findOne[T any](ctx context.Context, coll *mongo.Collection, filter bson.D) (*T, error) {
	var v T
	if err := coll.FindOne(ctx, filter).Decode(&v); err != nil {
		return nil, store.Translate(err)
	}
	return &v, nil
}

// migrateSeatKeys gives registrations stored before seat_key existed a
// value unique to them, so its unique index can be built.
func (s *regStore) migrateSeatKeys(ctx context.Context) error {
	cur, err := s.registrations.Find(ctx, bson.D{{Key: "seat_key", Value: bson.D{{Key: "$exists", Value: false}}}})
	if err != nil {
		return fmt.Errorf("migrate seat keys: %w", err)
	}
	var regs []Registration
	if err := cur.All(ctx, &regs); err != nil {
		return fmt.Errorf("migrate seat keys: %w", err)
	}
	for _, r := range regs {
		if _, err := s.registrations.UpdateOne(ctx, bson.D{{Key: "_id", Value: r.ID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "seat_key", Value: "-:" + r.ID}}}}); err != nil {
			return fmt.Errorf("migrate seat keys: %w", err)
		}
	}
	return nil
}
