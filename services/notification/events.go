package notification

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// eventsCollection is notification's own replica of events, from
// registration.v1.event.{created,updated}: their times, zone, venue,
// locales and reminder offsets, for reminders and agenda notices. Like the
// participants it is append-only, one document per event and version; the
// newest version of each event is picked when read. Events are few and
// change rarely, so reading them all is cheap.
const eventsCollection = "events"

// eventRecord is one version of an event as notification keeps it.
type eventRecord struct {
	ID         string       `bson:"_id"` // <event id>:<version>
	EventID    string       `bson:"event_id"`
	Version    int64        `bson:"version"`
	Event      events.Event `bson:"event"`
	MsgID      string       `bson:"msg_id"`
	ReceivedAt time.Time    `bson:"received_at"`
	// Copy marks the copy of the event a registration message carried
	// (_id <event id>:<version>:copy): agenda notices, announcements and
	// pages may use it, but the scheduler waits for the event's own
	// messages, which come first on the stream.
	Copy bool `bson:"copy,omitempty"`
}

// eventReplica keeps the events notification has heard of. Versions
// arriving twice or out of order are harmless: an insert of a version held
// already is ignored, and the highest version wins when read.
type eventReplica struct {
	coll *mongo.Collection
	log  *slog.Logger
}

func newEventReplica(db *mongo.Database, log *slog.Logger) *eventReplica {
	return &eventReplica{coll: db.Collection(eventsCollection), log: log}
}

// ensureIndexes serves get on MongoDB (FerretDB scans anyway).
func (r *eventReplica) ensureIndexes(ctx context.Context) error {
	return store.EnsureIndexes(ctx, r.coll.Database(),
		store.Index{Collection: eventsCollection, Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "version", Value: -1}}},
	)
}

// isEventType reports whether a registration-stream message describes an
// event.
func isEventType(typ string) bool {
	return typ == events.EventCreated || typ == events.EventUpdated
}

// wrap returns a batch handler that passes the whole batch to next, which
// leaves the event messages alone, and then stores those in the replica.
// The registration consumer runs it, so events are kept in the same stream
// order as the registrations; storing them last means the scheduler never
// sees an event before the registrations that came with it.
func (r *eventReplica) wrap(next bus.BatchHandler) bus.BatchHandler {
	return func(ctx context.Context, ds []bus.Delivery) []error {
		regErrs := next(ctx, ds)
		if regErrs == nil {
			regErrs = make([]error, len(ds))
		}
		// An event after a registration that will be retried waits for it.
		var failed error
		keep := make([]bus.Delivery, 0, len(ds))
		var owner []int
		for i, d := range ds {
			switch {
			case !isEventType(d.Envelope.Type):
				if err := regErrs[i]; err != nil && failed == nil && !bus.IsPermanent(err) {
					failed = err
				}
			case failed != nil:
				regErrs[i] = fmt.Errorf("after a registration to retry: %w", failed)
			default:
				keep = append(keep, d)
				owner = append(owner, i)
			}
		}
		for j, err := range r.handle(ctx, keep) {
			regErrs[owner[j]] = err
		}
		return regErrs
	}
}

// handle stores the event versions of a batch with one InsertMany and
// returns one error per delivery (nil for those not about events).
func (r *eventReplica) handle(ctx context.Context, ds []bus.Delivery) []error {
	errs := make([]error, len(ds))
	var recs []eventRecord
	var owner []int
	for i, d := range ds {
		if !isEventType(d.Envelope.Type) {
			continue
		}
		var ev events.Event
		if err := d.Envelope.Decode(&ev); err != nil {
			errs[i] = bus.Permanent(err)
			continue
		}
		if strings.TrimSpace(ev.ID) == "" || ev.Version < 1 {
			errs[i] = bus.Permanent(fmt.Errorf("%s %s: event without id or version", d.Envelope.Type, d.Envelope.ID))
			continue
		}
		recs = append(recs, eventRecord{
			ID: fmt.Sprintf("%s:%d", ev.ID, ev.Version), EventID: ev.ID, Version: ev.Version,
			Event: ev, MsgID: d.Envelope.ID, ReceivedAt: time.Now().UTC(),
		})
		owner = append(owner, i)
	}
	if err := r.add(ctx, recs); err != nil {
		for _, i := range owner {
			errs[i] = err
		}
		return errs
	}
	for _, rec := range recs {
		bus.Log(ctx, r.log).Info("event version stored", "event_id", rec.EventID, "version", rec.Version, "msg_id", rec.MsgID)
	}
	return errs
}

// add inserts event versions, ignoring those held already (the first copy
// of a version stays).
func (r *eventReplica) add(ctx context.Context, recs []eventRecord) error {
	if err := store.InsertNew(ctx, r.coll, recs); err != nil {
		return fmt.Errorf("store %d event versions: %w", len(recs), err)
	}
	return nil
}

// all returns the newest version of every event held, copies left out.
func (r *eventReplica) all(ctx context.Context) ([]events.Event, error) {
	cur, err := r.coll.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("events: %w", store.Translate(err))
	}
	var recs []eventRecord
	if err := cur.All(ctx, &recs); err != nil {
		return nil, fmt.Errorf("events: %w", store.Translate(err))
	}
	newest := map[string]int{}
	var out []events.Event
	for _, rec := range recs {
		if rec.Copy {
			continue
		}
		if i, ok := newest[rec.EventID]; !ok {
			newest[rec.EventID] = len(out)
			out = append(out, rec.Event)
		} else if rec.Version > out[i].Version {
			out[i] = rec.Event
		}
	}
	return out, nil
}

// get returns the newest version of the event, or store.ErrNotFound when
// none has arrived.
func (r *eventReplica) get(ctx context.Context, eventID string) (events.Event, error) {
	var rec eventRecord
	opts := options.FindOne().SetSort(bson.D{{Key: "version", Value: -1}})
	err := store.Translate(r.coll.FindOne(ctx, bson.D{{Key: "event_id", Value: eventID}}, opts).Decode(&rec))
	if err != nil {
		return events.Event{}, fmt.Errorf("event[%s]: %w", eventID, err)
	}
	return rec.Event, nil
}
