package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/events"
)

// fanoutEvent creates the event, with a hybrid session everyone attends,
// publishes its first agenda (the baseline: no email) and returns the event
// as the registration service announced it, and the session's id.
func (b *bench) fanoutEvent(ctx context.Context, s *Stack, js jetstream.JetStream) (events.Event, string, error) {
	starts := time.Now().Add(48 * time.Hour).Truncate(time.Hour)
	status, raw, err := s.call(ctx, http.MethodPost, "/admin/events", map[string]any{
		"slug": "fanout", "title": "Bench fan-out", "timezone": "Europe/Vienna",
		"starts_at": starts.Format(time.RFC3339), "ends_at": starts.Add(8 * time.Hour).Format(time.RFC3339),
		"venue":    map[string]any{"name": "Hofburg", "address": "Heldenplatz, 1010 Wien"},
		"online":   map[string]any{"join_url": "https://meet.example.org/fanout"},
		"capacity": map[string]any{"in_person": 0, "online": 0},
		"locales":  fanoutLocales,
	})
	var created struct{ ID string }
	if err == nil && status == http.StatusCreated {
		err = json.Unmarshal(raw, &created)
	}
	if err != nil || status != http.StatusCreated {
		return events.Event{}, "", fmt.Errorf("create the fan-out event: %d %s %v", status, raw, err)
	}
	ev, err := announcedEvent(ctx, js, created.ID)
	if err != nil {
		return ev, "", err
	}
	var sessionID string
	for i, title := range []string{"Opening plenary", "Panel I", "Panel II", "Closing"} {
		body := map[string]any{
			"title": title, "format": "hybrid", "room": "Neuer Saal",
			"starts_at": starts.Add(time.Duration(2*i) * time.Hour).Format(time.RFC3339),
			"ends_at":   starts.Add(time.Duration(2*i+1) * time.Hour).Format(time.RFC3339),
		}
		id, err := createSession(ctx, s, ev.ID, body)
		if err != nil {
			return ev, "", err
		}
		if i == 0 {
			sessionID = id
		}
	}
	if err := publishAgenda(ctx, s, ev.ID, "Programme"); err != nil {
		return ev, "", err
	}
	return ev, sessionID, nil
}

// announcedEvent waits for the event's registration.v1.event.created and
// returns its payload: the copy of the event registrations carry.
func announcedEvent(ctx context.Context, js jetstream.JetStream, id string) (events.Event, error) {
	st, err := js.Stream(ctx, events.StreamRegistration)
	if err != nil {
		return events.Event{}, err
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		m, err := st.GetLastMsgForSubject(ctx, events.EventCreated)
		if err == nil {
			var ev events.Event
			env, err := events.Parse(m.Data)
			if err == nil && env.Decode(&ev) == nil && ev.ID == id {
				return ev, nil
			}
		}
		select {
		case <-ctx.Done():
			return events.Event{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return events.Event{}, fmt.Errorf("event %s was not announced on %s", id, events.StreamRegistration)
}

// createSession adds a session to the event's draft agenda. The agenda
// service learns of a new event through NATS: a 404 is retried a while.
func createSession(ctx context.Context, s *Stack, eventID string, body map[string]any) (string, error) {
	for deadline := time.Now().Add(15 * time.Second); ; {
		status, raw, err := s.call(ctx, http.MethodPost, "/admin/events/"+eventID+"/sessions", body)
		if err != nil {
			return "", err
		}
		if status == http.StatusCreated {
			var created struct{ ID string }
			err := json.Unmarshal(raw, &created)
			return created.ID, err
		}
		if status != http.StatusNotFound || time.Now().After(deadline) {
			return "", fmt.Errorf("create session %v: %d %s", body["title"], status, raw)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func publishAgenda(ctx context.Context, s *Stack, eventID, note string) error {
	status, raw, err := s.call(ctx, http.MethodPost, "/admin/events/"+eventID+"/agenda/releases", map[string]any{"note": note})
	if err != nil || status != http.StatusCreated {
		return fmt.Errorf("publish the agenda: %d %s %v", status, raw, err)
	}
	return nil
}

// moveSession moves the session by half an hour and publishes the agenda:
// a time change, which concerns everyone who attends it. It returns when
// the release was published.
func (b *bench) moveSession(ctx context.Context, s *Stack, ev events.Event, sessionID string) (time.Time, error) {
	starts := ev.StartsAt.Add(30 * time.Minute)
	status, raw, err := s.call(ctx, http.MethodPatch, "/admin/events/"+ev.ID+"/sessions/"+sessionID, map[string]any{
		"starts_at": starts.Format(time.RFC3339), "ends_at": starts.Add(time.Hour).Format(time.RFC3339),
	})
	if err != nil || status != http.StatusOK {
		return time.Time{}, fmt.Errorf("move the session: %d %s %v", status, raw, err)
	}
	if err := publishAgenda(ctx, s, ev.ID, "The opening starts half an hour later"); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}
