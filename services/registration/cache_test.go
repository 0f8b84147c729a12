package registration

import (
	"context"
	"fmt"
	"testing"
	"unsafe"
)

// The cache keeps its own copy of a slug: Fiber's strings point into a
// buffer the next request overwrites, and a key that changed under the map
// once sent registrations for one event to another.
func TestEventCacheCopiesTheSlug(t *testing.T) {
	h := newHarness(t)
	first, second := h.createEvent("pair-1"), h.createEvent("pair-2")
	c := newEventCache(newStore(h.database()))
	buf := []byte("pair-1")
	reused := unsafe.String(&buf[0], len(buf)) // as Fiber hands it out
	if ev, err := c.bySlug(context.Background(), reused); err != nil || ev.ID != first.ID {
		t.Fatalf("pair-1: %v %v", ev, err)
	}
	copy(buf, "pair-2")   // the next request reuses the buffer
	for i := range 1000 { // other events fill the map, which grows and rehashes its keys
		c.put(fmt.Sprintf("other-%d", i), &Event{ID: "other"})
	}
	ev, err := c.bySlug(context.Background(), "pair-2")
	if err != nil || ev.ID != second.ID {
		t.Fatalf("pair-2 answered with event %s (pair-1 is %s): %v", ev.ID, first.ID, err)
	}
}
