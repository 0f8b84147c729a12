package registration

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// retainEvery looks for events whose retention period is over, at start and
// then every interval, and asks the decider to anonymise their
// registrations (DESIGN §7). Every replica looks; the request's key is the
// event and the day, so NATS keeps one of them.
func (r *registrar) retainEvery(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.retain(ctx, time.Now()); err != nil && ctx.Err() == nil {
			r.log.Warn("retention: failed; trying again later", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *registrar) retain(ctx context.Context, now time.Time) error {
	evs, err := r.store.eventsEndedBefore(ctx, now)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if now.Before(retentionEnds(&ev)) {
			continue
		}
		n, err := r.store.registrations.CountDocuments(ctx, bson.D{
			{Key: "event_id", Value: ev.ID}, {Key: "erased_at", Value: bson.D{{Key: "$exists", Value: false}}},
		})
		if err != nil || n == 0 {
			continue
		}
		// One request per chunk, named by the hour: replicas looking at
		// the same time ask once, and what is left is asked for next time.
		for k := range (n + retentionChunk - 1) / retentionChunk {
			req := &request{Kind: kindRetention, EventID: ev.ID}
			req.ID = fmt.Sprintf("retention-%s-%s-%d", ev.ID, now.UTC().Format("2006010215"), k)
			if err := r.submit(ctx, req, req.ID); err != nil {
				return err
			}
		}
		r.log.Info("retention: registrations to anonymise", "event_id", ev.ID, "count", n)
	}
	return nil
}

// retentionEnds is when an event's registrations are anonymised.
func retentionEnds(ev *Event) time.Time {
	return ev.EndsAt.Add(time.Duration(ev.RetentionDays) * 24 * time.Hour)
}

// eventsEndedBefore returns every event that ended before t (all of them:
// the oldest are the ones whose retention is over).
func (s *regStore) eventsEndedBefore(ctx context.Context, t time.Time) ([]Event, error) {
	cur, err := s.events.Find(ctx, bson.D{{Key: "ends_at", Value: bson.D{{Key: "$lt", Value: t.UTC()}}}})
	if err != nil {
		return nil, fmt.Errorf("past events: %w", err)
	}
	var out []Event
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("past events: %w", err)
	}
	return out, nil
}
