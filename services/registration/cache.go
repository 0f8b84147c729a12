package registration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// eventCache keeps events and their seat availability for a second, so the
// public pages and the registration rush do not read MongoDB per request
// (on FerretDB every lookup scans). A second-old view is fine there: the
// decider, not this cache, decides who gets a seat.
type eventCache struct {
	st *regStore
	mu sync.Mutex
	ev map[string]cached[*Event]
	av map[string]cached[map[string]bool]
	// refreshing marks slugs being reloaded in the background.
	refreshing map[string]bool
}

type cached[T any] struct {
	v  T
	at time.Time
}

const cacheTTL = time.Second

func newEventCache(st *regStore) *eventCache {
	return &eventCache{st: st, ev: map[string]cached[*Event]{}, av: map[string]cached[map[string]bool]{},
		refreshing: map[string]bool{}}
}

// bySlug returns the event at slug. A copy older than cacheTTL is still
// served while one background read refreshes it, so registrations go on
// being accepted (they need only NATS) while MongoDB is away, and a rush
// costs one read a second, not one per request. Only an event never seen
// is read while the caller waits.
func (c *eventCache) bySlug(ctx context.Context, slug string) (*Event, error) {
	// The slug becomes a map key that outlives the request: a string
	// from Fiber points into a buffer the next request overwrites, which
	// once turned one event's key into another's slug.
	slug = strings.Clone(slug)
	c.mu.Lock()
	e, ok := c.ev[slug]
	stale := ok && time.Since(e.at) >= cacheTTL
	if stale && !c.refreshing[slug] {
		c.refreshing[slug] = true
		go c.refresh(slug)
	}
	c.mu.Unlock()
	if ok {
		return e.v, nil
	}
	ev, err := c.st.eventBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	c.put(slug, ev)
	return ev, nil
}

func (c *eventCache) refresh(slug string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := c.st.eventBySlug(ctx, slug)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.refreshing, slug)
	switch {
	case err == nil:
		c.ev[slug] = cached[*Event]{v: ev, at: time.Now()}
	case errors.Is(err, store.ErrNotFound):
		delete(c.ev, slug) // renamed: the slug is free again
	}
}

func (c *eventCache) put(slug string, ev *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ev[slug] = cached[*Event]{v: ev, at: time.Now()}
}

// seats says per mode whether a seat is free now (always, in an unlimited
// mode), at most cacheTTL old.
func (c *eventCache) seats(ctx context.Context, ev *Event) (map[string]bool, error) {
	c.mu.Lock()
	e, ok := c.av[ev.ID]
	c.mu.Unlock()
	if ok && time.Since(e.at) < cacheTTL {
		return e.v, nil
	}
	st, err := c.st.counts(ctx, ev)
	if err != nil {
		if ok {
			return e.v, nil // MongoDB away: what we knew a moment ago
		}
		return nil, err
	}
	seats := map[string]bool{}
	for _, m := range modes {
		left, limited := st.SeatsLeft[m]
		seats[m] = !limited || (left > 0 && st.Waiting[m] == 0)
	}
	c.mu.Lock()
	c.av[ev.ID] = cached[map[string]bool]{v: seats, at: time.Now()}
	c.mu.Unlock()
	return seats, nil
}

// eventStats is what organisers see of an event's registrations.
type eventStats struct {
	EventID  string                    `json:"event_id"`
	Capacity events.Capacity           `json:"capacity"`
	ByMode   map[string]map[string]int `json:"by_mode"` // mode → status → count
	// SeatsLeft per limited mode; OverCapacity is how many more are
	// confirmed than a lowered capacity allows (nobody new is confirmed
	// until the mode is back under it).
	SeatsLeft    map[string]int `json:"seats_left"`
	OverCapacity map[string]int `json:"over_capacity"`
	Waiting      map[string]int `json:"waitlist"`
	CheckedIn    int            `json:"checked_in"`
	Joins        int            `json:"joins"`
	JoinedOnce   int            `json:"attendees_joined"`
}

// stats is counts with the joins, for organisers.
func (s *regStore) stats(ctx context.Context, ev *Event) (*eventStats, error) {
	out, err := s.counts(ctx, ev)
	if err != nil {
		return nil, err
	}
	joins, err := s.joins(ctx, ev.ID)
	if err != nil {
		return nil, err
	}
	out.Joins = len(joins)
	people := map[string]bool{}
	for _, j := range joins {
		people[j.RegistrationID] = true
	}
	out.JoinedOnce = len(people)
	return out, nil
}

// counts counts an event's registrations in one pass over them.
func (s *regStore) counts(ctx context.Context, ev *Event) (*eventStats, error) {
	cur, err := s.registrations.Find(ctx, bson.D{{Key: "event_id", Value: ev.ID}})
	if err != nil {
		return nil, fmt.Errorf("stats %s: %w", ev.ID, err)
	}
	defer cur.Close(ctx)
	out := &eventStats{EventID: ev.ID, Capacity: ev.Capacity, ByMode: map[string]map[string]int{},
		SeatsLeft: map[string]int{}, OverCapacity: map[string]int{}, Waiting: map[string]int{}}
	for _, m := range modes {
		out.ByMode[m] = map[string]int{}
	}
	for cur.Next(ctx) {
		var r struct {
			Mode        string     `bson:"mode"`
			Status      string     `bson:"status"`
			WantsMode   string     `bson:"wants_mode"`
			CheckedInAt *time.Time `bson:"checked_in_at"`
		}
		if err := cur.Decode(&r); err != nil {
			return nil, fmt.Errorf("stats %s: %w", ev.ID, err)
		}
		if out.ByMode[r.Mode] == nil {
			out.ByMode[r.Mode] = map[string]int{}
		}
		out.ByMode[r.Mode][r.Status]++
		reg := Registration{Mode: r.Mode, Status: r.Status, WantsMode: r.WantsMode}
		if w := reg.waitsFor(); w != "" {
			out.Waiting[w]++
		}
		if r.CheckedInAt != nil {
			out.CheckedIn++
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("stats %s: %w", ev.ID, err)
	}
	for _, m := range modes {
		if c := ev.capacityFor(m); c > 0 {
			confirmed := out.ByMode[m][events.StatusConfirmed]
			out.SeatsLeft[m] = max(c-confirmed, 0)
			out.OverCapacity[m] = max(confirmed-c, 0)
		}
	}
	return out, nil
}

// joins returns an event's attendance records.
func (s *regStore) joins(ctx context.Context, eventID string) ([]attendance, error) {
	cur, err := s.attendance.Find(ctx, bson.D{{Key: "event_id", Value: eventID}})
	if err != nil {
		return nil, fmt.Errorf("joins %s: %w", eventID, err)
	}
	var out []attendance
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("joins %s: %w", eventID, err)
	}
	return out, nil
}
