package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// releasesCollection holds notification's replica of the agenda's releases:
// one document per event and version, inserted once and never updated.
const releasesCollection = "releases"

// releaseRecord is one agenda release as notification keeps it: the whole
// published payload, so that change notices can be built from the replica
// alone (who is affected depends on the sessions before and after).
type releaseRecord struct {
	// ID is "<event_id>:<version>": inserting it claims the version, so a
	// redelivery or a replay of the same release adds nothing.
	ID             string `bson:"_id"`
	events.Release `bson:",inline"`
	// MsgID is the envelope id of the message the release was first
	// stored from, to follow it back to the bus.
	MsgID      string    `bson:"msg_id"`
	ReceivedAt time.Time `bson:"received_at"`
}

// releaseID is the _id of an event's release version.
func releaseID(eventID string, version int) string {
	return fmt.Sprintf("%s:%d", eventID, version)
}

// releaseReplica keeps the agenda releases notification has received.
// Releases are immutable and each carries its full snapshot, so the replica
// only ever inserts: versions arriving out of order or twice are harmless.
type releaseReplica struct {
	coll *mongo.Collection
	log  *slog.Logger
}

func newReleaseReplica(db *mongo.Database, log *slog.Logger) *releaseReplica {
	return &releaseReplica{coll: db.Collection(releasesCollection), log: log}
}

// ensureIndexes serves latestRelease on MongoDB (FerretDB scans anyway;
// an event has few releases).
func (r *releaseReplica) ensureIndexes(ctx context.Context) error {
	return store.EnsureIndexes(ctx, r.coll.Database(),
		store.Index{Collection: releasesCollection, Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "version", Value: -1}}},
	)
}

// handleRelease stores an agenda.v1.release.published payload. A payload
// that cannot be decoded or names no event and version can never be stored
// and goes to the DLQ.
func (r *releaseReplica) handleRelease(ctx context.Context, d bus.Delivery) error {
	if d.Envelope.Type != events.AgendaReleasePublished {
		return nil // a type newer than this code: not ours to keep
	}
	var rel events.Release
	if err := d.Envelope.Decode(&rel); err != nil {
		return bus.Permanent(err)
	}
	if rel.EventID == "" || rel.Version < 1 {
		return bus.Permanent(fmt.Errorf("%s %s: release without event id or version", d.Envelope.Type, d.Envelope.ID))
	}
	log := bus.Log(ctx, r.log).With("event_id", rel.EventID, "version", rel.Version, "msg_id", d.Envelope.ID)
	added, err := r.add(ctx, releaseRecord{
		ID: releaseID(rel.EventID, rel.Version), Release: rel,
		MsgID: d.Envelope.ID, ReceivedAt: time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	if !added {
		log.Info("release already held")
		return nil
	}
	log.Info("release stored", "previous", rel.Previous, "sessions", len(rel.Sessions), "changes", len(rel.Changes))
	return nil
}

// add inserts the release; added is false when that version was held
// already (the first copy stays: releases are immutable).
func (r *releaseReplica) add(ctx context.Context, rec releaseRecord) (added bool, err error) {
	_, err = r.coll.InsertOne(ctx, rec)
	switch err = store.Translate(err); {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrDuplicate):
		return false, nil
	default:
		return false, fmt.Errorf("store release[%s]: %w", rec.ID, err)
	}
}

// latestRelease returns the event's highest release version received so
// far, or store.ErrNotFound when none has arrived.
func (r *releaseReplica) latestRelease(ctx context.Context, eventID string) (releaseRecord, error) {
	var rec releaseRecord
	opts := options.FindOne().SetSort(bson.D{{Key: "version", Value: -1}})
	err := store.Translate(r.coll.FindOne(ctx, bson.D{{Key: "event_id", Value: eventID}}, opts).Decode(&rec))
	if err != nil {
		return rec, fmt.Errorf("latest release event[%s]: %w", eventID, err)
	}
	return rec, nil
}

// release returns one version of the event's releases, or store.ErrNotFound
// when it has not arrived (yet).
func (r *releaseReplica) release(ctx context.Context, eventID string, version int) (releaseRecord, error) {
	var rec releaseRecord
	id := releaseID(eventID, version)
	if err := store.Translate(r.coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&rec)); err != nil {
		return rec, fmt.Errorf("release[%s]: %w", id, err)
	}
	return rec, nil
}
