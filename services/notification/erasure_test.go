package notification

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

// TestErasureInTheSameBatchAsEarlierVersions: notification was down while
// a registration was confirmed and then erased; catching up, it gets both
// in one batch. Nothing of the person is kept or sent: no version, no
// confirmation, no reminder, no place among the participants.
func TestErasureInTheSameBatchAsEarlierVersions(t *testing.T) {
	c := startCluster(t, 1, time.Minute)
	c.down(0)
	ev := conference("evt-batch", tomorrowMorning(), "48h")
	c.publishEvent(events.EventCreated, ev)
	keep := attendee(ev, "keep-1", events.ModeInPerson)
	gone := attendee(ev, "gone-1", events.ModeInPerson)
	gone.Name, gone.Email = "Ferdinand Erasmus-Vogt", "f.erasmus-vogt@example.org"
	c.publish(events.RegistrationConfirmed, keep)
	c.publish(events.RegistrationConfirmed, gone)
	c.publish(events.RegistrationErased, events.Registration{ID: gone.ID, Version: 2, EventID: ev.ID})
	c.up(0)
	c.settled()
	if got := recipients(c.waitKind(kindReminder, 1)); !slices.Equal(got, []string{keep.ID}) {
		t.Fatalf("reminders to %v, want only %s", got, keep.ID)
	}
	for _, j := range c.kind(kindConfirmation) {
		if j.To == gone.Email {
			t.Errorf("the erased registration was confirmed by email")
		}
	}
	people, err := newParticipants(c.db(), newEmailStore(c.db())).current(context.Background(), ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range people {
		if p.RegistrationID == gone.ID {
			t.Errorf("the erased registration is still a participant: %+v", p)
		}
	}
	noPersonalData(t, c.db(), gone.Name, gone.Email)
}
