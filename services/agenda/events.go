package agenda

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// replica is the agenda's copy of the events the registration service owns.
type replica struct {
	coll *mongo.Collection
}

func newReplica(db *mongo.Database) *replica {
	return &replica{coll: db.Collection("events")}
}

// eventDoc is an event as the agenda keeps it.
type eventDoc struct {
	ID      string       `bson:"_id"`
	Version int64        `bson:"version"`
	Event   events.Event `bson:"event"`
}

// handleEvent applies registration.v1.event.* to the replica. Older versions
// than the one held are ignored, so redeliveries and reordering are harmless.
func (a *agenda) handleEvent(ctx context.Context, d bus.Delivery) error {
	if d.Envelope.Type != events.EventCreated && d.Envelope.Type != events.EventUpdated {
		return nil
	}
	var ev events.Event
	if err := d.Envelope.Decode(&ev); err != nil {
		return bus.Permanent(err)
	}
	if ev.ID == "" || ev.Slug == "" {
		return bus.Permanent(errors.New("event without id or slug"))
	}
	if err := a.events.apply(ctx, ev); err != nil {
		return err
	}
	a.log.Info("event replicated", "event_id", ev.ID, "version", ev.Version)
	return nil
}

func (r *replica) apply(ctx context.Context, ev events.Event) error {
	doc := eventDoc{ID: ev.ID, Version: ev.Version, Event: ev}
	_, err := r.coll.ReplaceOne(ctx,
		bson.D{{Key: "_id", Value: ev.ID}, {Key: "version", Value: bson.D{{Key: "$lt", Value: ev.Version}}}},
		doc, options.Replace().SetUpsert(true))
	// A duplicate key means a newer or equal version is already held.
	if err = store.Translate(err); err != nil && !errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("replicate event %s: %w", ev.ID, err)
	}
	return nil
}

func (r *replica) byID(ctx context.Context, id string) (*events.Event, error) {
	return r.find(ctx, bson.D{{Key: "_id", Value: id}})
}

func (r *replica) bySlug(ctx context.Context, slug string) (*events.Event, error) {
	return r.find(ctx, bson.D{{Key: "event.slug", Value: slug}})
}

func (r *replica) find(ctx context.Context, filter bson.D) (*events.Event, error) {
	var doc eventDoc
	if err := r.coll.FindOne(ctx, filter).Decode(&doc); err != nil {
		return nil, store.Translate(err)
	}
	return &doc.Event, nil
}
