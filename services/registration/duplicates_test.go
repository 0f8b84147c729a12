package registration

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// Someone turned away as "full" keeps no hold on their address: they can
// register in another mode, and are not told they are "already registered".
func TestRejectedPersonCanRegisterAgain(t *testing.T) {
	h := newHarness(t)
	h.createEvent("full", func(b map[string]any) { b["capacity"] = map[string]any{"in_person": 1} })
	h.register("full", "first@example.org", events.ModeInPerson)
	h.waitPublished(events.RegistrationConfirmed, 1)
	h.register("full", "second@example.org", events.ModeInPerson)
	h.waitPublished(events.RegistrationRejected, 1)

	h.register("full", "second@example.org", events.ModeOnline)
	got := h.waitPublished(events.RegistrationConfirmed, 2)
	if got[1].Email != "second@example.org" || got[1].Mode != events.ModeOnline {
		t.Fatalf("second confirmation %+v", got[1])
	}
	if n := len(h.published(events.RegistrationDuplicateAttempt)); n != 0 {
		t.Fatalf("%d duplicate attempts announced for a rejected person", n)
	}
}

// A second attempt by someone already registered never holds a seat, even
// for a moment, and is never answered "full": it is a duplicate attempt.
func TestDuplicateAttemptsNeverTakeASeat(t *testing.T) {
	h := newHarness(t)
	for round := range 5 {
		slug := fmt.Sprintf("pair-%d", round)
		h.createEvent(slug, func(b map[string]any) { b["capacity"] = map[string]any{"in_person": 2} })
		alice := fmt.Sprintf("alice%d@example.org", round)
		bob := fmt.Sprintf("bob%d@example.org", round)
		h.register(slug, alice, events.ModeInPerson)
		var wg sync.WaitGroup
		for _, who := range []string{alice, alice, alice, bob} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := h.register(slug, who, events.ModeInPerson); r.Status != http.StatusAccepted {
					t.Errorf("register %s: %d", who, r.Status)
				}
			}()
		}
		wg.Wait()
		testkit.Eventually(t, 10*time.Second, func() error {
			for _, p := range h.published(events.RegistrationConfirmed) {
				if p.Email == bob {
					return nil
				}
			}
			for _, p := range h.published(events.RegistrationRejected) {
				if p.Email == bob {
					t.Fatalf("round %d: bob was turned away as full while alice's duplicates ran", round)
				}
			}
			return fmt.Errorf("round %d: bob not confirmed yet", round)
		})
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if n := len(h.published(events.RegistrationDuplicateAttempt)); n != 15 {
			return fmt.Errorf("%d duplicate attempts announced, want 15", n)
		}
		return nil
	})
	for _, p := range h.published(events.RegistrationDuplicateAttempt) {
		if p.Status != events.StatusConfirmed || p.ManageURL == "" {
			t.Fatalf("duplicate attempt announced without the holder's registration: %+v", p)
		}
	}
}

// On the waiting list and the event full: trying again is a duplicate, not
// a rejection.
func TestWaitlistedPersonTryingAgainIsADuplicate(t *testing.T) {
	h := newHarness(t)
	h.createEvent("waitlist", func(b map[string]any) {
		b["capacity"] = map[string]any{"in_person": 1}
		b["registration"] = map[string]any{"waitlist": true}
	})
	h.register("waitlist", "holder@example.org", events.ModeInPerson)
	h.pub.Do(t, "POST", "/api/events/waitlist/registrations", map[string]any{
		"name": "W", "email": "waiting@example.org", "mode": "in_person", "consent": true, "waitlist_ok": true})
	h.waitPublished(events.RegistrationWaitlisted, 1)
	h.register("waitlist", "waiting@example.org", events.ModeInPerson) // waitlist_ok false this time
	h.waitPublished(events.RegistrationDuplicateAttempt, 1)
	if n := len(h.published(events.RegistrationRejected)); n != 0 {
		t.Fatalf("the waitlisted person was rejected on a second attempt")
	}
}

// Registered online (no seat), trying in person too: the attempt is a
// duplicate before it can touch a seat, so a newcomer arriving at the same
// moment is never turned away as "full".
func TestCrossModeDuplicateNeverTakesASeat(t *testing.T) {
	h := newHarness(t)
	for round := range 5 {
		slug := fmt.Sprintf("cross-%d", round)
		h.createEvent(slug, func(b map[string]any) { b["capacity"] = map[string]any{"in_person": 1} })
		alice := fmt.Sprintf("alice%d@example.org", round)
		bob := fmt.Sprintf("bob%d@example.org", round)
		h.register(slug, alice, events.ModeOnline)
		testkit.Eventually(t, 10*time.Second, func() error {
			for _, p := range h.published(events.RegistrationConfirmed) {
				if p.Email == alice {
					return nil
				}
			}
			return fmt.Errorf("alice not confirmed online yet")
		})
		var wg sync.WaitGroup
		for _, who := range []string{alice, alice, bob} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.register(slug, who, events.ModeInPerson)
			}()
		}
		wg.Wait()
		testkit.Eventually(t, 10*time.Second, func() error {
			for _, p := range h.published(events.RegistrationRejected) {
				if p.Email == bob {
					t.Fatalf("round %d: bob turned away as full by alice's second attempt", round)
				}
			}
			for _, p := range h.published(events.RegistrationConfirmed) {
				if p.Email == bob && p.Mode == events.ModeInPerson {
					return nil
				}
			}
			return fmt.Errorf("round %d: bob not confirmed yet", round)
		})
	}
}
