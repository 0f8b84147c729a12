package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/events"
)

// OutboxCollection is the name of every service's outbox collection.
const OutboxCollection = "outbox"

// Entry is one outbox entry: an event to publish together with what is needed
// to redo the state change it announces.
type Entry struct {
	// ID is the event id, used as Nats-Msg-Id so a repeated publish is dropped.
	ID string `bson:"_id"`
	// Kind names the Applier that redoes the state change.
	Kind string `bson:"kind"`
	// Subject and Message are what gets published.
	Subject string `bson:"subject"`
	Message []byte `bson:"message"`
	// State is the applier's input, e.g. the document to insert.
	State bson.Raw `bson:"state,omitempty"`
	// Applied is set when the state change was made but the publish failed,
	// so the relay only publishes (re-applying costs a lookup on a
	// collection that may be large).
	Applied   bool      `bson:"applied,omitempty"`
	CreatedAt time.Time `bson:"created_at"`
}

// NewEntry builds an entry for env whose state change is done by kind's
// applier with state as input.
func NewEntry(kind string, env events.Envelope, state any) (Entry, error) {
	body, err := env.Marshal()
	if err != nil {
		return Entry{}, err
	}
	e := Entry{ID: env.ID, Kind: kind, Subject: env.Type, Message: body, CreatedAt: time.Now().UTC()}
	if state != nil {
		raw, err := bson.Marshal(state)
		if err != nil {
			return Entry{}, fmt.Errorf("store: outbox state for %s: %w", kind, err)
		}
		e.State = raw
	}
	return e, nil
}

// Applier applies an entry's state change. It must be idempotent: the relay
// calls it again for an entry whose first run may or may not have happened.
// It may rewrite e.Subject and e.Message (keeping e.ID) when the outcome
// changes what is announced. An error wrapped with Discard drops the entry
// without publishing; any other error leaves it for the relay.
type Applier func(ctx context.Context, e *Entry) error

type discardError struct{ err error }

func (d discardError) Error() string { return d.err.Error() }
func (d discardError) Unwrap() error { return d.err }

// Discard marks an applier error as final: the change cannot be made (a
// unique slug already taken, say), so the entry is deleted unpublished and
// the error returned to the writer.
func Discard(err error) error { return discardError{err} }

// Publisher publishes a message with a Nats-Msg-Id.
type Publisher interface {
	Publish(ctx context.Context, subject, msgID string, body []byte) error
}

// publishTimeout bounds the wait for NATS's ack: past it the relay takes
// over, and the writer is not held up by an outage.
const publishTimeout = 3 * time.Second

// Outbox writes state changes together with the events that announce them
// (DESIGN §5.1).
type Outbox struct {
	coll     *mongo.Collection
	pub      Publisher
	log      *slog.Logger
	appliers map[string]Applier
}

// NewOutbox returns the outbox of db, publishing through pub.
func NewOutbox(db *mongo.Database, pub Publisher, log *slog.Logger) *Outbox {
	return &Outbox{coll: db.Collection(OutboxCollection), pub: pub, log: log, appliers: map[string]Applier{}}
}

// Register names the applier for entries of kind. Register every kind before
// calling Write or Relay.
func (o *Outbox) Register(kind string, apply Applier) {
	o.appliers[kind] = apply
}

// ErrDeferred wraps the error of an applier that failed after the entry was
// recorded: the change is not made yet, and the relay will retry it.
var ErrDeferred = errors.New("outbox: change deferred to the relay")

// Write records e, applies its state change and publishes it. It returns once
// the state change is durable; a failed publish is left to the relay and is
// not an error. An error means the change was not made: if it wraps
// ErrDeferred, the entry is recorded and the relay will make the change.
func (o *Outbox) Write(ctx context.Context, e Entry) error {
	apply, ok := o.appliers[e.Kind]
	if !ok {
		return fmt.Errorf("store: outbox: no applier for kind %q", e.Kind)
	}
	if _, err := o.coll.InsertOne(ctx, e); err != nil {
		return fmt.Errorf("store: outbox insert %s: %w", e.ID, Translate(err))
	}
	_, err := o.finish(ctx, apply, &e)
	var d discardError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &d):
		return d.err
	}
	return fmt.Errorf("%w: %w", ErrDeferred, err)
}

// finish applies and publishes e and deletes it. published reports whether
// the publish went out; when it did not, the entry stays for the relay and
// err is nil all the same, since the state change is made.
func (o *Outbox) finish(ctx context.Context, apply Applier, e *Entry) (published bool, err error) {
	published, _, err = o.finishEntry(ctx, apply, e)
	return published, err
}

// finishEntry is finish, also returning why a publish failed.
func (o *Outbox) finishEntry(ctx context.Context, apply Applier, e *Entry) (published bool, pubErr, err error) {
	if !e.Applied {
		if err := o.apply(ctx, apply, e); err != nil {
			return false, nil, err
		}
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if pubErr := o.pub.Publish(pctx, e.Subject, e.ID, e.Message); pubErr != nil {
		o.log.Warn("outbox: publish failed; the relay will retry", "msg_id", e.ID, "subject", e.Subject, "err", pubErr)
		// Remember the change is made, and what it announces (an applier
		// may have rewritten it).
		if !e.Applied {
			_, uerr := o.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: e.ID}}, bson.D{{Key: "$set", Value: bson.D{
				{Key: "applied", Value: true}, {Key: "subject", Value: e.Subject}, {Key: "message", Value: e.Message},
			}}})
			if uerr != nil {
				o.log.Warn("outbox: could not mark entry applied", "msg_id", e.ID, "err", uerr)
			}
		}
		return false, pubErr, nil
	}
	if _, err := o.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: e.ID}}); err != nil {
		o.log.Warn("outbox: delete failed; the relay will retry", "msg_id", e.ID, "err", err)
	}
	return true, nil, nil
}

// unreachable reports whether a publish failed because NATS is not taking
// messages now (down, disconnected, slow to ack), rather than because of
// the message itself (too large for the server, say): the first ends a
// sweep, the second only skips that entry.
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"not connected", "no responders", "timeout", "connection closed", "no response from stream", "stream not found"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// apply runs the entry's applier; a discarded entry is deleted and its
// error returned still wrapped by Discard.
func (o *Outbox) apply(ctx context.Context, apply Applier, e *Entry) error {
	if err := apply(ctx, e); err != nil {
		var d discardError
		if errors.As(err, &d) {
			if _, derr := o.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: e.ID}}); derr != nil {
				o.log.Warn("outbox: delete discarded entry", "msg_id", e.ID, "err", derr)
			}
			return d // still marked, so callers can tell a discard
		}
		return fmt.Errorf("store: outbox apply %s %s: %w", e.Kind, e.ID, err)
	}
	return nil
}

// Sweep finishes entries older than minAge, oldest first, at most limit of
// them, and returns how many it completed.
func (o *Outbox) Sweep(ctx context.Context, minAge time.Duration, limit int64) (int, error) {
	filter := bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: time.Now().UTC().Add(-minAge)}}}}
	cur, err := o.coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(limit))
	if err != nil {
		return 0, fmt.Errorf("store: outbox sweep: %w", err)
	}
	var entries []Entry
	if err := cur.All(ctx, &entries); err != nil {
		return 0, fmt.Errorf("store: outbox sweep: %w", err)
	}
	done := 0
	for i := range entries {
		e := &entries[i]
		apply, ok := o.appliers[e.Kind]
		if !ok {
			o.log.Error("outbox: entry of unknown kind left in place", "msg_id", e.ID, "kind", e.Kind)
			continue
		}
		published, pubErr, err := o.finishEntry(ctx, apply, e)
		if err != nil && ctx.Err() == nil {
			o.log.Warn("outbox: relay could not finish entry", "msg_id", e.ID, "kind", e.Kind, "err", err)
		}
		if pubErr != nil && unreachable(pubErr) {
			// NATS is not taking messages; the next sweep tries again.
			break
		}
		if pubErr != nil {
			// This entry cannot go out (the next sweep tries it again);
			// it must not hold back the ones behind it.
			o.log.Error("outbox: entry cannot be published; skipped", "msg_id", e.ID, "kind", e.Kind, "err", pubErr)
		}
		if published {
			done++
		}
	}
	return done, nil
}

// Relay sweeps the outbox at once and then every interval until ctx ends,
// finishing entries a crash or an outage left behind.
func (o *Outbox) Relay(ctx context.Context, interval, minAge time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := o.Sweep(ctx, minAge, 500)
		if err != nil && ctx.Err() == nil {
			o.log.Warn("outbox relay", "err", err)
		}
		if n > 0 {
			o.log.Info("outbox relay finished entries", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// States returns the state of every unfinished entry of kind.
func (o *Outbox) States(ctx context.Context, kind string) ([]bson.Raw, error) {
	cur, err := o.coll.Find(ctx, bson.D{{Key: "kind", Value: kind}})
	if err != nil {
		return nil, fmt.Errorf("store: outbox states: %w", err)
	}
	var entries []Entry
	if err := cur.All(ctx, &entries); err != nil {
		return nil, fmt.Errorf("store: outbox states: %w", err)
	}
	out := make([]bson.Raw, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.State)
	}
	return out, nil
}

// Pending counts the entries waiting in the outbox.
func (o *Outbox) Pending(ctx context.Context) (int64, error) {
	return o.coll.CountDocuments(ctx, bson.D{})
}
