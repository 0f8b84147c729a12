package registration

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

// agendaConsumer is the durable consumer that keeps the agenda replica.
const agendaConsumer = "registration-agenda"

// agendaReplica is the registration service's copy of each event's newest
// agenda release, reduced to what a per-session join link needs. One small
// document per event: FerretDB scans a collection on every lookup.
type agendaReplica struct {
	coll *mongo.Collection
	log  *slog.Logger
}

func newAgendaReplica(db *mongo.Database, log *slog.Logger) *agendaReplica {
	return &agendaReplica{coll: db.Collection("agendas"), log: log}
}

// agendaDoc is an event's newest known release.
type agendaDoc struct {
	EventID     string        `bson:"_id"`
	Version     int           `bson:"version"`
	PublishedAt time.Time     `bson:"published_at"`
	Sessions    []joinSession `bson:"sessions"`
}

// joinSession is a session as the join link sees it.
type joinSession struct {
	ID        string    `bson:"id"`
	Title     string    `bson:"title"`
	StartsAt  time.Time `bson:"starts_at"`
	EndsAt    time.Time `bson:"ends_at"`
	Format    string    `bson:"format"`
	JoinURL   string    `bson:"join_url,omitempty"`
	Cancelled bool      `bson:"cancelled,omitempty"`
}

// consume keeps the replica up to date with agenda.v1.release.published
// until ctx ends.
func (a *agendaReplica) consume(ctx context.Context, b *bus.Bus) error {
	return b.Consume(ctx, bus.ConsumerConfig{
		Stream:         events.StreamAgenda,
		Durable:        agendaConsumer,
		FilterSubjects: []string{events.AgendaReleasePublished},
		Workers:        1,
		// One release in flight across all replicas of the service, in
		// stream order: FerretDB runs the conditional replace in apply as
		// read, match, write, so two replicas applying two versions at
		// once could leave the older one in place.
		MaxAckPending: 1,
	}, a.handle)
}

// handle applies one release; other types on the stream are ignored.
func (a *agendaReplica) handle(ctx context.Context, d bus.Delivery) error {
	if d.Envelope.Type != events.AgendaReleasePublished {
		return nil
	}
	var rel events.Release
	if err := d.Envelope.Decode(&rel); err != nil {
		return bus.Permanent(err)
	}
	if rel.EventID == "" || rel.Version < 1 {
		return bus.Permanent(errors.New("release without event id or version"))
	}
	applied, err := a.apply(ctx, &rel)
	if err != nil {
		return err
	}
	log := bus.Log(ctx, a.log)
	if applied {
		log.Info("agenda release replicated", "event_id", rel.EventID, "version", rel.Version, "sessions", len(rel.Sessions))
	} else {
		log.Info("agenda release ignored: a newer or equal version is held", "event_id", rel.EventID, "version", rel.Version)
	}
	return nil
}

// apply stores rel unless the replica holds its version or a newer one, so
// a redelivery or a late older release changes nothing. It reports whether
// rel was stored.
func (a *agendaReplica) apply(ctx context.Context, rel *events.Release) (bool, error) {
	doc := agendaDoc{EventID: rel.EventID, Version: rel.Version, PublishedAt: rel.PublishedAt,
		Sessions: make([]joinSession, 0, len(rel.Sessions))}
	for _, s := range rel.Sessions {
		doc.Sessions = append(doc.Sessions, joinSession{ID: s.ID, Title: s.Title, StartsAt: s.StartsAt,
			EndsAt: s.EndsAt, Format: s.Format, JoinURL: s.JoinURL, Cancelled: s.Cancelled})
	}
	// Replaces an older version; with none stored, inserts. With this
	// version or a newer one stored, the upsert's insert hits _id.
	_, err := a.coll.ReplaceOne(ctx,
		bson.D{{Key: "_id", Value: rel.EventID}, {Key: "version", Value: bson.D{{Key: "$lt", Value: rel.Version}}}},
		doc, options.Replace().SetUpsert(true))
	if err = store.Translate(err); errors.Is(err, store.ErrDuplicate) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("agenda replica: event_id[%s] version[%d]: %w", rel.EventID, rel.Version, err)
	}
	return true, nil
}

// session returns the session id of the event's newest known release;
// store.ErrNotFound when no release is known or it has no such session.
func (a *agendaReplica) session(ctx context.Context, eventID, id string) (*joinSession, error) {
	var doc agendaDoc
	err := a.coll.FindOne(ctx, bson.D{{Key: "_id", Value: eventID}}).Decode(&doc)
	if err = store.Translate(err); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("agenda replica: event_id[%s]: %w", eventID, err)
	}
	for i := range doc.Sessions {
		if doc.Sessions[i].ID == id {
			return &doc.Sessions[i], nil
		}
	}
	return nil, store.ErrNotFound
}

// validSessionID accepts what a session id can look like (a ULID, or
// letters, digits, dashes and underscores up to 64), so nothing else from
// the query string reaches a database query.
func validSessionID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
