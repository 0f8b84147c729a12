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

// Seats are claimed by inserting a claim document whose _id names one seat:
// "<event>:<mode>:<n>" with n in 1..capacity. The unique _id makes a seat
// impossible to give twice, and capacity bounds n, so concurrent
// registrations can never oversell.
//
// DESIGN §5.5 asks for one conditional $inc on a counter document. That is
// atomic on MongoDB but not on FerretDB, which reads, matches and writes in
// separate steps: 20 concurrent registrations for 5 seats confirmed 9 in our
// test. An insert against a unique index is atomic on both.

var modes = []string{events.ModeInPerson, events.ModeOnline}

type seatClaim struct {
	ID      string `bson:"_id"`
	EventID string `bson:"event_id"`
	Mode    string `bson:"mode"`
	// EmailKey is unique among claims: an address already holding a seat of
	// the event cannot take a second one, not even for a moment (a double
	// submission would otherwise make someone else "full").
	EmailKey       string    `bson:"email_key"`
	RegistrationID string    `bson:"registration_id"`
	ClaimedAt      time.Time `bson:"claimed_at"`
}

func seatID(eventID, mode string, n int) string { return fmt.Sprintf("%s:%s:%d", eventID, mode, n) }

func (s *regStore) seatsTaken(ctx context.Context, eventID, mode string) (int, error) {
	n, err := s.seats.CountDocuments(ctx, bson.D{{Key: "event_id", Value: eventID}, {Key: "mode", Value: mode}})
	if err != nil {
		return 0, fmt.Errorf("count seats %s/%s: %w", eventID, mode, err)
	}
	return int(n), nil
}

// claimSeat claims a seat of the registration's mode and returns its id, or
// "" when none is left. Unlimited modes need no claim and return "-". It
// returns errDuplicateEmail when the registration's address already holds a
// seat of the event.
func (s *regStore) claimSeat(ctx context.Context, ev *Event, reg *Registration) (string, error) {
	capacity := ev.capacityFor(reg.Mode)
	if capacity == 0 {
		return unlimitedSeat, nil
	}
	taken, err := s.seatsTaken(ctx, ev.ID, reg.Mode)
	if err != nil {
		return "", err
	}
	if taken >= capacity {
		return "", s.refuseHeldAddress(ctx, reg.EmailKey)
	}
	// Start after the seats already taken: under a rush, most claimers find
	// a free seat within a few tries; freed seats lower down come last.
	now := time.Now().UTC()
	checkedEmail := false
	for i := range capacity {
		n := (taken+i)%capacity + 1
		c := seatClaim{ID: seatID(ev.ID, reg.Mode, n), EventID: ev.ID, Mode: reg.Mode,
			EmailKey: reg.EmailKey, RegistrationID: reg.ID, ClaimedAt: now}
		_, err := s.seats.InsertOne(ctx, c)
		switch err = store.Translate(err); {
		case err == nil:
			return c.ID, nil
		case !errors.Is(err, store.ErrDuplicate):
			return "", fmt.Errorf("claim seat %s: %w", c.ID, err)
		}
		// Taken, or refused for the address? Asked once: the answer holds.
		if !checkedEmail {
			checkedEmail = true
			if err := s.refuseHeldAddress(ctx, reg.EmailKey); err != nil {
				return "", err
			}
		}
	}
	return "", s.refuseHeldAddress(ctx, reg.EmailKey)
}

// refuseHeldAddress returns errDuplicateEmail when the address (its email
// key) already holds a seat of the event.
func (s *regStore) refuseHeldAddress(ctx context.Context, emailKey string) error {
	held, err := s.seats.CountDocuments(ctx, bson.D{{Key: "email_key", Value: emailKey}})
	if err != nil {
		return fmt.Errorf("claim seat: %w", err)
	}
	if held > 0 {
		return errDuplicateEmail
	}
	return nil
}

// unlimitedSeat marks a registration that holds a place in a mode without a
// seat limit.
const unlimitedSeat = "-"

// releaseSeat gives back the seat a registration holds. It deletes the
// claim only if that registration still holds it, so releasing twice (a
// replayed outbox entry) cannot free a seat someone else has since taken.
func (s *regStore) releaseSeat(ctx context.Context, seat, registrationID string) error {
	if seat == "" || seat == unlimitedSeat {
		return nil
	}
	_, err := s.seats.DeleteOne(ctx, bson.D{{Key: "_id", Value: seat}, {Key: "registration_id", Value: registrationID}})
	if err != nil {
		return fmt.Errorf("release seat %s: %w", seat, err)
	}
	return nil
}

// seatsLeft returns the free seats per limited mode.
func (s *regStore) seatsLeft(ctx context.Context, ev *Event) (map[string]int, error) {
	out := map[string]int{}
	for _, mode := range modes {
		capacity := ev.capacityFor(mode)
		if capacity == 0 {
			continue
		}
		taken, err := s.seatsTaken(ctx, ev.ID, mode)
		if err != nil {
			return nil, err
		}
		out[mode] = max(capacity-taken, 0)
	}
	return out, nil
}

// seatsAvailable says per mode whether a seat is free now (always, in an
// unlimited mode).
func (s *regStore) seatsAvailable(ctx context.Context, ev *Event) (map[string]bool, error) {
	left, err := s.seatsLeft(ctx, ev)
	if err != nil {
		return nil, err
	}
	seats := map[string]bool{}
	for _, mode := range modes {
		n, limited := left[mode]
		seats[mode] = !limited || n > 0
	}
	return seats, nil
}

// reconcileSeats deletes claims older than minAge whose registration does
// not hold them: a crash between claiming a seat and writing the outbox
// entry leaves such a claim. Finish the outbox first (see registrar), or a
// claim whose registration is still on its way would be freed.
func (s *regStore) reconcileSeats(ctx context.Context, eventID string, minAge time.Duration) (int, error) {
	cur, err := s.seats.Find(ctx, bson.D{
		{Key: "event_id", Value: eventID},
		{Key: "claimed_at", Value: bson.D{{Key: "$lt", Value: time.Now().UTC().Add(-minAge)}}},
	})
	if err != nil {
		return 0, fmt.Errorf("reconcile seats %s: %w", eventID, err)
	}
	var claims []seatClaim
	if err := cur.All(ctx, &claims); err != nil {
		return 0, fmt.Errorf("reconcile seats %s: %w", eventID, err)
	}
	freed := 0
	for _, c := range claims {
		reg, err := s.registrationByID(ctx, c.RegistrationID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return freed, err
		}
		if reg != nil && reg.Seat == c.ID {
			continue
		}
		if err := s.releaseSeat(ctx, c.ID, c.RegistrationID); err != nil {
			return freed, err
		}
		freed++
	}
	return freed, nil
}
