package registration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// Seats are claimed by inserting a claim document. Its "slot" names one
// seat, "<event>:<mode>:<n>" with n in 1..capacity, under a unique index, so
// a seat cannot be given twice and there are never more claims than seats.
// Its _id is a fresh id per claim, and a release deletes by that id alone,
// so it can only ever remove the claim it was meant for.
//
// DESIGN §5.5 asks for one conditional $inc on a counter document. That is
// atomic on MongoDB but not on FerretDB, which reads, matches and writes in
// separate steps (20 concurrent registrations for 5 seats confirmed 9 in our
// test). FerretDB's deletes and updates work the same way, so neither a
// counter nor a "delete if still held by R" is safe there; inserts against a
// unique index and deletes by _id are.

var modes = []string{events.ModeInPerson, events.ModeOnline}

type seatClaim struct {
	ID             string    `bson:"_id"`
	Slot           string    `bson:"slot"`
	EventID        string    `bson:"event_id"`
	Mode           string    `bson:"mode"`
	RegistrationID string    `bson:"registration_id"`
	ClaimedAt      time.Time `bson:"claimed_at"`
}

func slotID(eventID, mode string, n int) string { return fmt.Sprintf("%s:%s:%d", eventID, mode, n) }

func (s *regStore) seatsTaken(ctx context.Context, eventID, mode string) (int, error) {
	n, err := s.seats.CountDocuments(ctx, bson.D{{Key: "event_id", Value: eventID}, {Key: "mode", Value: mode}})
	if err != nil {
		return 0, fmt.Errorf("count seats %s/%s: %w", eventID, mode, err)
	}
	return int(n), nil
}

// unlimitedSeat marks a registration that holds a place in a mode without a
// seat limit.
const unlimitedSeat = "-"

// claimSeat claims a seat of the registration's mode and returns the claim's
// id, "" when none is left, or unlimitedSeat in a mode without a limit.
func (s *regStore) claimSeat(ctx context.Context, ev *Event, reg *Registration) (string, error) {
	capacity := ev.capacityFor(reg.Mode)
	if capacity == 0 {
		return unlimitedSeat, nil
	}
	key := ev.ID + ":" + reg.Mode
	count := func() (int, error) { return s.seatsTaken(ctx, ev.ID, reg.Mode) }
	start, err := s.cursor.take(key, count)
	if err != nil {
		return "", err
	}
	if start >= capacity {
		// Past the last seat: full, unless seats were given back. A full
		// count is remembered for cursorTTL, so a rush on a full event
		// does not count the claims once per request.
		if s.cursor.full(key) {
			return "", nil
		}
		taken, err := count()
		if err != nil {
			return "", err
		}
		if taken >= capacity {
			s.cursor.markFull(key)
			return "", nil
		}
		s.cursor.reset(key, 0)
		start = 0
	}
	now := time.Now().UTC()
	for i := range capacity {
		n := (start+i)%capacity + 1
		c := seatClaim{ID: events.NewID(), Slot: slotID(ev.ID, reg.Mode, n), EventID: ev.ID, Mode: reg.Mode,
			RegistrationID: reg.ID, ClaimedAt: now}
		_, err := s.seats.InsertOne(ctx, c)
		switch err = store.Translate(err); {
		case err == nil:
			return c.ID, nil
		case !errors.Is(err, store.ErrDuplicate):
			return "", fmt.Errorf("claim seat %s: %w", c.Slot, err)
		}
	}
	return "", nil
}

// slotCursor hands out the seat to try first, so that concurrent claimers
// in one process start on different seats instead of colliding on the same
// one and probing forward together. It is only a hint — the unique slot
// index decides — refreshed from a count of the claims at most every
// cursorTTL: on FerretDB a count scans the collection, too slow to run for
// every registration in a rush.
type slotCursor struct {
	mu     sync.Mutex
	next   map[string]int
	at     map[string]time.Time
	fullAt map[string]time.Time
}

const cursorTTL = time.Second

func newSlotCursor() *slotCursor {
	return &slotCursor{next: map[string]int{}, at: map[string]time.Time{}, fullAt: map[string]time.Time{}}
}

// take returns the 0-based seat to try first for key and moves past it.
func (c *slotCursor) take(key string, count func() (int, error)) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at[key]) > cursorTTL {
		n, err := count()
		if err != nil {
			return 0, err
		}
		c.next[key], c.at[key] = n, time.Now()
	}
	n := c.next[key]
	c.next[key]++
	return n, nil
}

// full reports whether key was counted full less than cursorTTL ago.
func (c *slotCursor) full(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.fullAt[key]) < cursorTTL
}

func (c *slotCursor) markFull(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fullAt[key] = time.Now()
}

func (c *slotCursor) reset(key string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next[key], c.at[key] = n, time.Now()
}

// releaseSeat gives back the seat of a claim. Releasing twice, or after the
// seat went to someone else under a new claim, removes nothing more.
func (s *regStore) releaseSeat(ctx context.Context, claim string) error {
	if claim == "" || claim == unlimitedSeat {
		return nil
	}
	if _, err := s.seats.DeleteOne(ctx, bson.D{{Key: "_id", Value: claim}}); err != nil {
		return fmt.Errorf("release seat claim %s: %w", claim, err)
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

// reconcileSeats frees claims older than minAge whose registration does not
// hold them: a crash between claiming a seat and writing the outbox entry
// leaves such a claim. Claims of registrations still in the outbox
// (inFlight) are left alone.
func (s *regStore) reconcileSeats(ctx context.Context, eventID string, minAge time.Duration, inFlight map[string]bool) (int, error) {
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
		if inFlight[c.RegistrationID] {
			continue
		}
		reg, err := s.registrationByID(ctx, c.RegistrationID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return freed, err
		}
		if reg != nil && reg.Seat == c.ID {
			continue
		}
		if err := s.releaseSeat(ctx, c.ID); err != nil {
			return freed, err
		}
		freed++
	}
	return freed, nil
}
