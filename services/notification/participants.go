package notification

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// participantsCollection is notification's own replica of registrations,
// from the registration events: who gets reminders and agenda notices.
// It is append-only, one document per registration and version, inserted
// many at a time with the emails they cause; the newest version of each
// registration is picked when read. Updating a document per event would
// cost a scan per update on FerretDB (NOTES.md).
const participantsCollection = "participants"

// participant is one version of a registration as notification keeps it.
type participant struct {
	ID             string       `bson:"_id"` // <registration id>:<version>
	RegistrationID string       `bson:"registration_id"`
	EventID        string       `bson:"event_id"`
	Version        int64        `bson:"version"`
	Status         string       `bson:"status"`
	Mode           string       `bson:"mode"`
	Name           string       `bson:"name"`
	Email          string       `bson:"email"`
	Locale         string       `bson:"locale,omitempty"`
	Timezone       string       `bson:"timezone,omitempty"`
	ManageURL      string       `bson:"manage_url,omitempty"`
	JoinURL        string       `bson:"join_url,omitempty"`
	Event          events.Event `bson:"event"`
	Erased         bool         `bson:"erased,omitempty"`
	At             time.Time    `bson:"at"`
}

func participantOf(reg events.Registration, at time.Time) participant {
	return participant{
		ID: fmt.Sprintf("%s:%d", reg.ID, reg.Version), RegistrationID: reg.ID, EventID: reg.EventID,
		Version: reg.Version, Status: reg.Status, Mode: reg.Mode, Name: reg.Name, Email: reg.Email,
		Locale: reg.Locale, Timezone: reg.Timezone, ManageURL: reg.ManageURL, JoinURL: reg.JoinURL,
		Event: reg.Event, At: at.UTC(),
	}
}

// tombstoneID marks an erased registration: no version of it is ever kept
// again, whatever arrives late.
func tombstoneID(regID string) string { return regID + ":erased" }

type participants struct {
	coll   *mongo.Collection
	emails *emailStore
}

func newParticipants(db *mongo.Database, emails *emailStore) *participants {
	return &participants{coll: db.Collection(participantsCollection), emails: emails}
}

func (p *participants) ensureIndexes(ctx context.Context) error {
	return store.EnsureIndexes(ctx, p.coll.Database(),
		store.Index{Collection: participantsCollection, Keys: bson.D{{Key: "event_id", Value: 1}}},
		store.Index{Collection: participantsCollection, Keys: bson.D{{Key: "registration_id", Value: 1}}},
	)
}

// record inserts versions, ignoring those already held. redelivered lists
// registrations seen again after a failure: a version of one erased
// meanwhile must not bring its name back, so those are checked.
func (p *participants) record(ctx context.Context, vs []participant, redelivered []string) error {
	if len(vs) == 0 {
		return nil
	}
	docs := make([]any, len(vs))
	for i := range vs {
		docs[i] = vs[i]
	}
	_, err := p.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err != nil && !onlyDuplicates(err) {
		return fmt.Errorf("record %d participants: %w", len(vs), store.Translate(err))
	}
	for _, id := range redelivered {
		err := p.coll.FindOne(ctx, bson.D{{Key: "_id", Value: tombstoneID(id)}}).Err()
		if err = store.Translate(err); errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if err := p.erase(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// onlyDuplicates reports whether an unordered InsertMany failed only on
// documents already there.
func onlyDuplicates(err error) bool {
	var bulk mongo.BulkWriteException
	if !errors.As(err, &bulk) || bulk.WriteConcernError != nil {
		return false
	}
	for _, we := range bulk.WriteErrors {
		if !mongo.IsDuplicateKeyError(we) {
			return false
		}
	}
	return true
}

// erase forgets a registration: a tombstone first, so nothing of it is
// kept again, then every version of it and every email to it (the log's
// statuses name no address). Repeating it is harmless.
func (p *participants) erase(ctx context.Context, regID string) error {
	_, err := p.coll.InsertOne(ctx, participant{ID: tombstoneID(regID), RegistrationID: regID, Erased: true, At: time.Now().UTC()})
	if err = store.Translate(err); err != nil && !errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("erase registration[%s]: %w", regID, err)
	}
	filter := bson.D{{Key: "registration_id", Value: regID}, {Key: "erased", Value: bson.D{{Key: "$ne", Value: true}}}}
	if _, err := p.coll.DeleteMany(ctx, filter); err != nil {
		return fmt.Errorf("erase registration[%s]: %w", regID, err)
	}
	if _, err := p.emails.emails.DeleteMany(ctx, bson.D{{Key: "registration_id", Value: regID}}); err != nil {
		return fmt.Errorf("erase the emails of registration[%s]: %w", regID, err)
	}
	return forgetUnsubscribed(ctx, p.coll.Database(), regID)
}

// current returns the newest version of every registration of the event,
// erased ones left out.
func (p *participants) current(ctx context.Context, eventID string) ([]participant, error) {
	cur, err := p.coll.Find(ctx, bson.D{{Key: "event_id", Value: eventID}})
	if err != nil {
		return nil, fmt.Errorf("participants of event[%s]: %w", eventID, err)
	}
	var all []participant
	if err := cur.All(ctx, &all); err != nil {
		return nil, fmt.Errorf("participants of event[%s]: %w", eventID, err)
	}
	newest := map[string]int{}
	var out []participant
	for _, v := range all {
		if i, ok := newest[v.RegistrationID]; !ok {
			newest[v.RegistrationID] = len(out)
			out = append(out, v)
		} else if v.Version > out[i].Version {
			out[i] = v
		}
	}
	kept := out[:0]
	for _, v := range out {
		if !v.Erased {
			kept = append(kept, v)
		}
	}
	return kept, nil
}
