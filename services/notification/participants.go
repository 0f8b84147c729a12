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
	ID             string    `bson:"_id"` // <registration id>:<version>
	RegistrationID string    `bson:"registration_id"`
	EventID        string    `bson:"event_id"`
	Version        int64     `bson:"version"`
	Status         string    `bson:"status"`
	Mode           string    `bson:"mode"`
	Name           string    `bson:"name"`
	Email          string    `bson:"email"`
	Locale         string    `bson:"locale,omitempty"`
	Timezone       string    `bson:"timezone,omitempty"`
	ManageURL      string    `bson:"manage_url,omitempty"`
	JoinURL        string    `bson:"join_url,omitempty"`
	Erased         bool      `bson:"erased,omitempty"`
	At             time.Time `bson:"at"`
	// The event a registration message carries goes into the events
	// replica (eventVersions), not here: a copy per version doubled the
	// cost of every insert and of the scan an agenda notice starts with.
}

func participantOf(reg events.Registration, at time.Time) participant {
	return participant{
		ID: fmt.Sprintf("%s:%d", reg.ID, reg.Version), RegistrationID: reg.ID, EventID: reg.EventID,
		Version: reg.Version, Status: reg.Status, Mode: reg.Mode, Name: reg.Name, Email: reg.Email,
		Locale: reg.Locale, Timezone: reg.Timezone, ManageURL: reg.ManageURL, JoinURL: reg.JoinURL,
		At: at.UTC(),
	}
}

// legacyEvent returns the copy of the event that participant versions
// stored before the events replica took the copies (store.ErrNotFound when
// none has one): for an event whose own messages notification never kept.
func (p *participants) legacyEvent(ctx context.Context, eventID string) (events.Event, error) {
	var doc struct {
		Event events.Event `bson:"event"`
	}
	err := p.coll.FindOne(ctx, bson.D{{Key: "event_id", Value: eventID}, {Key: "event.id", Value: bson.D{{Key: "$exists", Value: true}}}},
		options.FindOne().SetSort(bson.D{{Key: "version", Value: -1}})).Decode(&doc)
	if err = store.Translate(err); err != nil {
		return events.Event{}, fmt.Errorf("event[%s]: %w", eventID, err)
	}
	return doc.Event, nil
}

// erasedCollection lists erased registrations, one small document each:
// no version of them is kept again, whatever arrives late. It is small, so
// looking a batch's registrations up in it is cheap even on FerretDB.
const erasedCollection = "erased"

type erasure struct {
	ID      string    `bson:"_id"` // the registration id
	EventID string    `bson:"event_id,omitempty"`
	At      time.Time `bson:"at"`
}

type participants struct {
	coll   *mongo.Collection
	erased *mongo.Collection
	emails *emailStore
}

func newParticipants(db *mongo.Database, emails *emailStore) *participants {
	return &participants{coll: db.Collection(participantsCollection), erased: db.Collection(erasedCollection), emails: emails}
}

func (p *participants) ensureIndexes(ctx context.Context) error {
	return store.EnsureIndexes(ctx, p.coll.Database(),
		store.Index{Collection: participantsCollection, Keys: bson.D{{Key: "event_id", Value: 1}}},
		store.Index{Collection: participantsCollection, Keys: bson.D{{Key: "registration_id", Value: 1}}},
		store.Index{Collection: erasedCollection, Keys: bson.D{{Key: "event_id", Value: 1}}},
		store.Index{Collection: emailsCollection, Keys: bson.D{{Key: "registration_id", Value: 1}}},
	)
}

// record inserts versions, ignoring those already held. A version of a
// registration erased meanwhile (a redelivery after the erasure) must not
// bring its name back: such registrations are erased again.
func (p *participants) record(ctx context.Context, vs []participant) error {
	if len(vs) == 0 {
		return nil
	}
	if err := store.InsertNew(ctx, p.coll, vs); err != nil {
		return fmt.Errorf("record %d participants: %w", len(vs), err)
	}
	ids := make([]string, len(vs))
	for i := range vs {
		ids[i] = vs[i].RegistrationID
	}
	erased, err := p.erasedAmong(ctx, ids)
	if err != nil {
		return err
	}
	for id := range erased {
		if err := p.erase(ctx, id, ""); err != nil {
			return err
		}
	}
	return nil
}

// erasedAmong returns which of the registrations are erased.
func (p *participants) erasedAmong(ctx context.Context, regIDs []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(regIDs) == 0 {
		return out, nil
	}
	cur, err := p.erased.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: regIDs}}}})
	if err != nil {
		return nil, fmt.Errorf("erased registrations: %w", store.Translate(err))
	}
	var found []erasure
	if err := cur.All(ctx, &found); err != nil {
		return nil, fmt.Errorf("erased registrations: %w", store.Translate(err))
	}
	for _, e := range found {
		out[e.ID] = true
	}
	return out, nil
}

// erase forgets a registration: its erasure is recorded first, so nothing
// of it is kept again, then every version of it, every email to it (the
// log's statuses name no address) and its unsubscribe record. Repeating
// it is harmless.
func (p *participants) erase(ctx context.Context, regID, eventID string) error {
	_, err := p.erased.InsertOne(ctx, erasure{ID: regID, EventID: eventID, At: time.Now().UTC()})
	if err = store.Translate(err); err != nil && !errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("erase registration[%s]: %w", regID, err)
	}
	if _, err := p.coll.DeleteMany(ctx, bson.D{{Key: "registration_id", Value: regID}}); err != nil {
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
	ids := make([]string, len(out))
	for i, v := range out {
		ids[i] = v.RegistrationID
	}
	erased, err := p.erasedAmong(ctx, ids)
	if err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, v := range out {
		if !v.Erased && !erased[v.RegistrationID] {
			kept = append(kept, v)
		}
	}
	return kept, nil
}
