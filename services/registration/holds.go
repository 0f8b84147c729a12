package registration

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// An address hold says "this address is registered for this event (or is
// being registered)": a document whose email_key is unique, inserted before
// anything else a registration does. A second attempt with the address is
// known as a duplicate at once, before it could take a seat — even for a
// moment, which would turn someone else away as "full" — and with an
// insert, not a scan of the registrations. A rejection gives its hold back.
// Like seat claims, a hold has a fresh _id and is deleted by it alone.
type addressHold struct {
	ID             string    `bson:"_id"`
	EmailKey       string    `bson:"email_key"`
	RegistrationID string    `bson:"registration_id"`
	HeldAt         time.Time `bson:"held_at"`
}

// holdAddress holds the registration's address and returns the hold's id;
// errDuplicateEmail means another registration holds it.
func (s *regStore) holdAddress(ctx context.Context, reg *Registration) (string, error) {
	h := addressHold{ID: events.NewID(), EmailKey: reg.EmailKey, RegistrationID: reg.ID, HeldAt: time.Now().UTC()}
	_, err := s.holds.InsertOne(ctx, h)
	switch err = store.Translate(err); {
	case err == nil:
		return h.ID, nil
	case errors.Is(err, store.ErrDuplicate):
		return "", errDuplicateEmail
	}
	return "", fmt.Errorf("hold address: %w", err)
}

// releaseHold gives an address back.
func (s *regStore) releaseHold(ctx context.Context, hold string) error {
	if hold == "" {
		return nil
	}
	if _, err := s.holds.DeleteOne(ctx, bson.D{{Key: "_id", Value: hold}}); err != nil {
		return fmt.Errorf("release hold %s: %w", hold, err)
	}
	return nil
}

// holder returns the registration holding the address, store.ErrNotFound
// when nobody holds it, or errNotRecorded when its holder is still on its
// way (in the outbox, or lost in a crash).
func (s *regStore) holder(ctx context.Context, emailKey string) (*Registration, error) {
	h, err := findOne[addressHold](ctx, s.holds, bson.D{{Key: "email_key", Value: emailKey}})
	if err != nil {
		return nil, err
	}
	reg, err := s.registrationByID(ctx, h.RegistrationID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNotRecorded
	}
	return reg, err
}

var errNotRecorded = errors.New("the registration holding the address is not recorded yet")

// reconcileHolds frees holds older than minAge whose registration does not
// exist (a crash before it was recorded), except those of registrations
// still in the outbox (inFlight).
func (s *regStore) reconcileHolds(ctx context.Context, minAge time.Duration, inFlight map[string]bool) (int, error) {
	cur, err := s.holds.Find(ctx, bson.D{{Key: "held_at", Value: bson.D{{Key: "$lt", Value: time.Now().UTC().Add(-minAge)}}}})
	if err != nil {
		return 0, fmt.Errorf("reconcile holds: %w", err)
	}
	var holds []addressHold
	if err := cur.All(ctx, &holds); err != nil {
		return 0, fmt.Errorf("reconcile holds: %w", err)
	}
	freed := 0
	for _, h := range holds {
		if inFlight[h.RegistrationID] {
			continue
		}
		reg, err := s.registrationByID(ctx, h.RegistrationID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return freed, err
		}
		if reg != nil && reg.Hold == h.ID {
			continue
		}
		if err := s.releaseHold(ctx, h.ID); err != nil {
			return freed, err
		}
		freed++
	}
	return freed, nil
}
