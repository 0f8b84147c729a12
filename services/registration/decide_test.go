package registration

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

// These tests drive eventState.decide directly: no NATS, no database. A sim
// feeds one event's requests in stream order and checks, after every
// decision, what the decider promises whatever the request (checkState).

// rules describes the event a sim starts with.
type rules struct {
	inPerson, online int // seats; 0 is unlimited
	waitlist         bool
	manual           bool
}

type sim struct {
	t   *testing.T
	s   *eventState
	seq uint64
	now time.Time
	n   int // registrations submitted
	// said counts the outcomes announced, by type.
	said map[string]int
}

func newSim(t *testing.T, r rules) *sim {
	t.Helper()
	approval := ApprovalAuto
	if r.manual {
		approval = ApprovalManual
	}
	start := time.Date(2026, 11, 9, 9, 0, 0, 0, time.UTC)
	ev := &Event{
		ID: "ev-1", Version: 1, Slug: "roundtable", Title: "Roundtable", Timezone: "Europe/Vienna",
		StartsAt: start, EndsAt: start.Add(8 * time.Hour),
		Capacity:     events.Capacity{InPerson: r.inPerson, Online: r.online},
		Registration: Rules{Approval: approval, Waitlist: r.waitlist},
		Locales:      []string{"en"}, RetentionDays: 30,
	}
	return &sim{t: t, s: newEventState(ev), now: start.Add(-30 * 24 * time.Hour), said: map[string]int{}}
}

// decide decides req as the next request in the stream and checks the
// state afterwards.
func (m *sim) decide(req *request) result {
	m.t.Helper()
	m.seq++
	m.now = m.now.Add(time.Minute)
	if req.ID == "" {
		req.ID = fmt.Sprintf("req-%d", m.seq)
	}
	if req.EventID == "" {
		req.EventID = m.s.ev.ID
	}
	req.At = m.now
	before := map[string]int{}
	for _, md := range modes {
		before[md] = len(m.s.seated[md])
	}
	res := m.s.decide(req, m.seq, m.now)
	checkState(m.t, m.s, res, before, req)
	for _, o := range res.outcomes {
		m.said[o.typ]++
	}
	return res
}

// register submits a registration for email and returns its id (the id
// the registration gets if one is made).
func (m *sim) register(email, mode string, waitlistOK bool) (result, string) {
	m.t.Helper()
	m.n++
	id := fmt.Sprintf("reg-%d", m.n)
	res := m.decide(&request{Kind: kindRegister, Register: &newRegistrationData{
		ID: id, Name: "Person " + email, Email: email, Mode: mode, Locale: "en", Timezone: "Asia/Tokyo",
		Answers: map[string]any{"organisation": "OSCE"}, WaitlistOK: waitlistOK,
		Consent: Consent{Given: true, TextVersion: ConsentTextVersion, At: m.now},
	}})
	return res, id
}

// registerMany registers n people (p1@…, p2@…) in mode and returns their
// ids in order.
func (m *sim) registerMany(n int, mode string) []string {
	m.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		_, ids[i] = m.register(fmt.Sprintf("p%d@example.org", m.n+1), mode, true)
	}
	return ids
}

// act asks for kind on a registration, as an organiser would (link
// version 0).
func (m *sim) act(kind, id string) result {
	m.t.Helper()
	return m.decide(&request{Kind: kind, RegID: id})
}

func (m *sim) switchTo(id, mode string) result {
	m.t.Helper()
	req := &request{Kind: kindSwitch, RegID: id, Mode: mode}
	if r := m.s.regs[id]; r != nil {
		req.LinkVersion = r.LinkVersion
	}
	return m.decide(req)
}

// setCapacity is an organiser's edit of the event's seats, made from the
// version in force.
func (m *sim) setCapacity(inPerson, online int) result {
	m.t.Helper()
	next := *m.s.ev
	next.Capacity = events.Capacity{InPerson: inPerson, Online: online}
	res := m.decide(&request{Kind: kindEventUpdate, Event: &next, From: m.s.ev.Version})
	if res.reply.Status != replyOK {
		m.t.Fatalf("capacity change refused: %+v", res.reply)
	}
	return res
}

func (m *sim) reg(id string) *Registration {
	m.t.Helper()
	r := m.s.regs[id]
	if r == nil {
		m.t.Fatalf("no registration %s", id)
	}
	return r
}

// said lists a result's outcomes as "type id", e.g. "promoted reg-3",
// the type without its registration.v1.registration. prefix.
func said(res result) []string {
	out := []string{}
	for _, o := range res.outcomes {
		out = append(out, strings.TrimPrefix(o.typ, "registration.v1.registration.")+" "+o.reg.ID)
	}
	return out
}

func wantSaid(t *testing.T, step string, res result, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := said(res); !slices.Equal(got, want) {
		t.Fatalf("%s: outcomes %q, want %q", step, got, want)
	}
}

func wantReply(t *testing.T, step string, res result, status string) {
	t.Helper()
	if res.reply.Status != status {
		t.Fatalf("%s: reply %q (%s), want %q", step, res.reply.Status, res.reply.Detail, status)
	}
}

func wantSeat(t *testing.T, r *Registration, mode string, seat int) {
	t.Helper()
	if r.Status != events.StatusConfirmed || r.Mode != mode || r.Seat != seat {
		t.Fatalf("%s: %s %s seat %d, want confirmed %s seat %d", r.ID, r.Status, r.Mode, r.Seat, mode, seat)
	}
}

func wantWaiting(t *testing.T, s *eventState, mode string, ids ...string) {
	t.Helper()
	if got := s.waiting[mode]; !slices.Equal(got, ids) && !(len(got) == 0 && len(ids) == 0) {
		t.Fatalf("%s waiting list %v, want %v", mode, got, ids)
	}
}

// checkState checks what must hold after every decision: seats within the
// capacity (unless it was cut, and then nobody new is seated), no seat
// number twice, waiting lists holding only waiting registrations in queue
// order, nobody waiting while a seat is free, addresses held only by live
// registrations, the unique keys the database fences on unique and in step
// with the state, outcomes carrying the final version, and a state rebuilt
// from the registrations (as a decider taking over does) equal to this one.
func checkState(t *testing.T, s *eventState, res result, before map[string]int, req *request) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after %s %s: %s", req.Kind, req.ID, fmt.Sprintf(format, args...))
	}
	for _, md := range modes {
		c, n := s.ev.capacityFor(md), len(s.seated[md])
		if c > 0 && n > c && n > before[md] {
			fail("%d seated %s, capacity %d (were %d)", n, md, c, before[md])
		}
		for seat, id := range s.seated[md] {
			r := s.regs[id]
			if r == nil || r.Status != events.StatusConfirmed || r.Mode != md || r.Seat != seat {
				fail("seat %s/%d held by %+v", md, seat, r)
			}
		}
		var last uint64
		for _, id := range s.waiting[md] {
			r := s.regs[id]
			if r == nil || r.waitsFor() != md {
				fail("%s on the %s waiting list is not waiting for it: %+v", id, md, r)
			}
			if r.Queue <= last {
				fail("%s waiting list out of queue order at %s (queue %d after %d)", md, id, r.Queue, last)
			}
			last = r.Queue
		}
		if s.hasSeat(md) && len(s.waiting[md]) > 0 {
			fail("a %s seat is free while %d wait for one", md, len(s.waiting[md]))
		}
	}
	emailKeys, seatKeys := map[string]string{}, map[string]string{}
	for id, r := range s.regs {
		switch {
		case r.Status == events.StatusConfirmed && (r.Seat <= 0 || s.seated[r.Mode][r.Seat] != id):
			fail("%s confirmed %s without its seat %d", id, r.Mode, r.Seat)
		case r.Status != events.StatusConfirmed && (r.Seat != 0 || r.WantsMode != ""):
			fail("%s is %s but holds seat %d / wants %q", id, r.Status, r.Seat, r.WantsMode)
		}
		if w := r.waitsFor(); w != "" && !slices.Contains(s.waiting[w], id) {
			fail("%s waits for %s but is not on its list", id, w)
		}
		if r.live() && r.ErasedAt == nil && s.byAddr[emailKey(r.EventID, r.Email)] != id {
			fail("live %s does not hold its address", id)
		}
		if r.EmailKey != r.addressKey() || r.SeatKey != r.seatKey() {
			fail("%s keys %q %q, want %q %q", id, r.EmailKey, r.SeatKey, r.addressKey(), r.seatKey())
		}
		if other, dup := emailKeys[r.EmailKey]; dup {
			fail("email key %q of %s and %s", r.EmailKey, id, other)
		}
		if other, dup := seatKeys[r.SeatKey]; dup {
			fail("seat key %q of %s and %s", r.SeatKey, id, other)
		}
		emailKeys[r.EmailKey], seatKeys[r.SeatKey] = id, id
	}
	for key, id := range s.byAddr {
		r := s.regs[id]
		if r == nil || !r.live() || r.ErasedAt != nil || key != emailKey(r.EventID, r.Email) {
			fail("address %q held by %+v", key, r)
		}
	}

	// The result: each changed registration once, as it stands now; each
	// outcome with the final version of its registration.
	seen := map[string]bool{}
	for _, c := range res.changed {
		if seen[c.ID] {
			fail("%s written twice", c.ID)
		}
		seen[c.ID] = true
		r := s.regs[c.ID]
		if c.Version != r.Version || c.Status != r.Status || c.Seat != r.Seat || c.SeatKey != r.SeatKey ||
			c.EmailKey != r.EmailKey || c.Mode != r.Mode || c.WantsMode != r.WantsMode {
			fail("%s written as %+v, stands as %+v", c.ID, c, *r)
		}
	}
	for _, o := range res.outcomes {
		r := s.regs[o.reg.ID]
		if r == nil || o.reg.Version != r.Version || o.reg.Status != r.Status || o.reg.Mode != r.Mode {
			fail("outcome %s %s at version %d (%s), the registration is at %+v", o.typ, o.reg.ID, o.reg.Version, o.reg.Status, r)
		}
		switch o.typ {
		case events.RegistrationDuplicateAttempt, events.RegistrationLinkRequested:
		default:
			if !seen[o.reg.ID] {
				fail("outcome %s about %s, which is not written", o.typ, o.reg.ID)
			}
		}
	}

	// A decider taking over rebuilds this very state.
	copies := make([]Registration, 0, len(s.regs))
	for _, r := range s.regs {
		copies = append(copies, *r)
	}
	rebuilt := newEventState(s.ev)
	rebuilt.load(copies)
	if !maps.Equal(rebuilt.byAddr, s.byAddr) {
		fail("rebuilt addresses %v, live %v", rebuilt.byAddr, s.byAddr)
	}
	for _, md := range modes {
		if !maps.Equal(rebuilt.seated[md], s.seated[md]) {
			fail("rebuilt %s seats %v, live %v", md, rebuilt.seated[md], s.seated[md])
		}
		if len(rebuilt.waiting[md])+len(s.waiting[md]) > 0 && !slices.Equal(rebuilt.waiting[md], s.waiting[md]) {
			fail("rebuilt %s waiting list %v, live %v", md, rebuilt.waiting[md], s.waiting[md])
		}
	}
}

func TestDecideWaitlistIsFIFO(t *testing.T) {
	m := newSim(t, rules{inPerson: 2, waitlist: true})
	var ids []string
	var got []string
	for i := range 5 {
		res, id := m.register(fmt.Sprintf("p%d@example.org", i+1), events.ModeInPerson, true)
		ids = append(ids, id)
		got = append(got, said(res)...)
	}
	want := []string{"confirmed reg-1", "confirmed reg-2", "waitlisted reg-3", "waitlisted reg-4", "waitlisted reg-5"}
	if !slices.Equal(got, want) {
		t.Fatalf("outcomes %q, want %q", got, want)
	}
	wantSeat(t, m.reg(ids[0]), events.ModeInPerson, 1)
	wantSeat(t, m.reg(ids[1]), events.ModeInPerson, 2)
	wantWaiting(t, m.s, events.ModeInPerson, ids[2], ids[3], ids[4])
	for i, id := range ids[2:] {
		if p := m.s.position(m.reg(id)); p != i+1 {
			t.Errorf("%s at position %d, want %d", id, p, i+1)
		}
	}

	res := m.act(kindCancel, ids[0])
	wantSaid(t, "cancel a confirmed", res, "cancelled reg-1", "promoted reg-3")
	wantSeat(t, m.reg(ids[2]), events.ModeInPerson, 1)
	if r := m.reg(ids[0]); r.Status != events.StatusCancelled || r.Reason != "participant" || r.Seat != 0 {
		t.Fatalf("cancelled registration %+v", *r)
	}
	if v := res.outcomes[1].reg.Version; v != 2 {
		t.Fatalf("promotion announced at version %d, want 2", v)
	}
	wantWaiting(t, m.s, events.ModeInPerson, ids[3], ids[4])

	res = m.act(kindCancel, ids[3])
	wantSaid(t, "cancel a waitlisted", res, "cancelled reg-4")
	wantWaiting(t, m.s, events.ModeInPerson, ids[4])
	if len(m.s.seated[events.ModeInPerson]) != 2 {
		t.Fatalf("%d seated after a waitlisted cancelled", len(m.s.seated[events.ModeInPerson]))
	}

	version := m.reg(ids[3]).Version
	res = m.act(kindCancel, ids[3])
	wantSaid(t, "cancel twice", res)
	wantReply(t, "cancel twice", res, replyOK)
	if len(res.changed) != 0 || m.reg(ids[3]).Version != version {
		t.Fatalf("a second cancel changed %d registrations (version %d → %d)", len(res.changed), version, m.reg(ids[3]).Version)
	}
}

func TestDecideCapacityChanges(t *testing.T) {
	t.Run("a cut confirms nobody new until the mode is under it", func(t *testing.T) {
		m := newSim(t, rules{waitlist: true})
		ids := m.registerMany(3, events.ModeInPerson)
		res := m.setCapacity(2, 0)
		wantSaid(t, "cut to 2", res)
		if res.event == nil || res.event.Version != 2 || res.reply.Event == nil || m.s.ev.Capacity.InPerson != 2 {
			t.Fatalf("event after the cut: %+v (reply %+v)", res.event, res.reply.Event)
		}
		res, fourth := m.register("late@example.org", events.ModeInPerson, true)
		wantSaid(t, "register over the cut", res, "waitlisted "+fourth)
		wantSaid(t, "cancel one (3 → 2 seated, 2 seats)", m.act(kindCancel, ids[0]), "cancelled "+ids[0])
		if n := len(m.s.seated[events.ModeInPerson]); n != 2 {
			t.Fatalf("%d seated, want 2", n)
		}
		wantSaid(t, "cancel another", m.act(kindCancel, ids[1]), "cancelled "+ids[1], "promoted "+fourth)
	})
	t.Run("a raise promotes at once as many as it allows", func(t *testing.T) {
		m := newSim(t, rules{inPerson: 2, waitlist: true})
		ids := m.registerMany(6, events.ModeInPerson)
		wantSaid(t, "raise to 4", m.setCapacity(4, 0), "promoted "+ids[2], "promoted "+ids[3])
		wantWaiting(t, m.s, events.ModeInPerson, ids[4], ids[5])
		wantSaid(t, "unlimited", m.setCapacity(0, 0), "promoted "+ids[4], "promoted "+ids[5])
		for i, id := range ids {
			wantSeat(t, m.reg(id), events.ModeInPerson, i+1)
		}
	})
	t.Run("lowered after cancellations", func(t *testing.T) {
		m := newSim(t, rules{inPerson: 10})
		ids := m.registerMany(10, events.ModeInPerson)
		for _, id := range ids[:5] {
			m.act(kindCancel, id)
		}
		m.setCapacity(6, 0)
		var confirmed []string
		for i := range 4 {
			res, id := m.register(fmt.Sprintf("new%d@example.org", i), events.ModeInPerson, false)
			if res.outcomes[0].typ == events.RegistrationConfirmed {
				confirmed = append(confirmed, id)
				if s := m.reg(id).Seat; s < 1 || s > 6 {
					t.Errorf("new seat number %d, outside 1..6", s)
				}
			}
		}
		if len(confirmed) != 1 || len(m.s.seated[events.ModeInPerson]) != 6 {
			t.Fatalf("confirmed %v after the cut to 6; %d seated", confirmed, len(m.s.seated[events.ModeInPerson]))
		}
	})
	t.Run("an edit made from an old version is refused", func(t *testing.T) {
		m := newSim(t, rules{inPerson: 2, waitlist: true})
		ids := m.registerMany(3, events.ModeInPerson)
		m.setCapacity(2, 5) // version 2
		ev := m.s.ev
		stale := *ev
		stale.Capacity.InPerson = 10
		res := m.decide(&request{Kind: kindEventUpdate, Event: &stale, From: 1})
		wantReply(t, "stale edit", res, "event_changed")
		wantSaid(t, "stale edit", res)
		if res.event != nil || m.s.ev != ev || ev.Version != 2 || ev.Capacity.InPerson != 2 || len(res.changed) != 0 {
			t.Fatalf("a stale edit changed the event: %+v, now %+v", res.event, *m.s.ev)
		}
		wantWaiting(t, m.s, events.ModeInPerson, ids[2])
	})
}

func TestDecideModeSwitch(t *testing.T) {
	t.Run("a full mode: keep the seat, wait, then both move in one decision", func(t *testing.T) {
		m := newSim(t, rules{inPerson: 1, online: 1, waitlist: true})
		_, a := m.register("a@example.org", events.ModeInPerson, true)
		_, b := m.register("b@example.org", events.ModeOnline, true)
		_, c := m.register("c@example.org", events.ModeInPerson, true)

		res := m.switchTo(a, events.ModeOnline)
		wantReply(t, "switch", res, replyOK)
		wantSaid(t, "switch to a full mode", res, "updated "+a)
		if res.outcomes[0].reg.Reason != "switch_waitlisted" {
			t.Errorf("reason %q, want switch_waitlisted", res.outcomes[0].reg.Reason)
		}
		ra := m.reg(a)
		wantSeat(t, ra, events.ModeInPerson, 1)
		if ra.WantsMode != events.ModeOnline || m.s.position(ra) != 1 {
			t.Fatalf("a wants %q at position %d, want online at 1", ra.WantsMode, m.s.position(ra))
		}
		wantWaiting(t, m.s, events.ModeOnline, a)

		res = m.act(kindCancel, b)
		wantSaid(t, "an online seat frees", res, "cancelled "+b, "promoted "+a, "promoted "+c)
		wantSeat(t, m.reg(a), events.ModeOnline, 1)
		wantSeat(t, m.reg(c), events.ModeInPerson, 1)
		if m.reg(a).WantsMode != "" {
			t.Fatalf("a still wants %q", m.reg(a).WantsMode)
		}
	})
	t.Run("a free seat: one step, the old seat to the next in line", func(t *testing.T) {
		m := newSim(t, rules{inPerson: 1, waitlist: true})
		_, a := m.register("a@example.org", events.ModeInPerson, true)
		_, c := m.register("c@example.org", events.ModeInPerson, true)
		res := m.switchTo(a, events.ModeOnline)
		wantSaid(t, "switch to a free mode", res, "updated "+a, "promoted "+c)
		if res.outcomes[0].reg.Reason != "mode_switched" {
			t.Errorf("reason %q, want mode_switched", res.outcomes[0].reg.Reason)
		}
		wantSeat(t, m.reg(a), events.ModeOnline, 1)
		wantSeat(t, m.reg(c), events.ModeInPerson, 1)
	})
	t.Run("a waitlisted person switching to a free mode is promoted", func(t *testing.T) {
		m := newSim(t, rules{inPerson: 1, waitlist: true})
		m.register("a@example.org", events.ModeInPerson, true)
		_, w := m.register("w@example.org", events.ModeInPerson, true)
		wantSaid(t, "switch", m.switchTo(w, events.ModeOnline), "promoted "+w)
		wantSeat(t, m.reg(w), events.ModeOnline, 1)
		wantWaiting(t, m.s, events.ModeInPerson)
	})
	t.Run("switching back withdraws the wait", func(t *testing.T) {
		m := newSim(t, rules{inPerson: 1, online: 1, waitlist: true})
		_, a := m.register("a@example.org", events.ModeInPerson, true)
		_, b := m.register("b@example.org", events.ModeOnline, true)
		m.switchTo(a, events.ModeOnline)
		res := m.switchTo(a, events.ModeInPerson)
		wantSaid(t, "switch back", res, "updated "+a)
		if res.outcomes[0].reg.Reason != "switch_withdrawn" || m.reg(a).WantsMode != "" {
			t.Fatalf("reason %q, wants %q", res.outcomes[0].reg.Reason, m.reg(a).WantsMode)
		}
		wantWaiting(t, m.s, events.ModeOnline)
		wantSaid(t, "the online seat frees", m.act(kindCancel, b), "cancelled "+b)
		wantSeat(t, m.reg(a), events.ModeInPerson, 1)
	})
	t.Run("a pending registration just changes mode", func(t *testing.T) {
		m := newSim(t, rules{inPerson: 1, online: 1, manual: true})
		_, a := m.register("a@example.org", events.ModeInPerson, false)
		wantSaid(t, "switch", m.switchTo(a, events.ModeOnline), "updated "+a)
		if r := m.reg(a); r.Status != events.StatusPending || r.Mode != events.ModeOnline || r.Seat != 0 {
			t.Fatalf("after the switch %+v", *r)
		}
	})
	t.Run("no waiting list and the mode full: refused, nothing changed", func(t *testing.T) {
		m := newSim(t, rules{online: 1})
		m.register("b@example.org", events.ModeOnline, false)
		_, a := m.register("a@example.org", events.ModeInPerson, false)
		before := *m.reg(a)
		res := m.switchTo(a, events.ModeOnline)
		wantReply(t, "switch", res, "full")
		wantSaid(t, "switch", res)
		if after := m.reg(a); len(res.changed) != 0 || after.Version != before.Version || after.Mode != before.Mode ||
			after.Seat != before.Seat || after.WantsMode != "" || after.Status != before.Status {
			t.Fatalf("a refused switch changed %d registrations: %+v", len(res.changed), *m.reg(a))
		}
	})
}

func TestDecideManualApproval(t *testing.T) {
	m := newSim(t, rules{inPerson: 1, manual: true})
	res, a := m.register("a@example.org", events.ModeInPerson, false)
	wantSaid(t, "register", res, "pending "+a)
	_, b := m.register("b@example.org", events.ModeInPerson, false)
	if len(m.s.seated[events.ModeInPerson]) != 0 {
		t.Fatal("a registration awaiting approval holds a seat")
	}

	res = m.act(kindApprove, a)
	wantSaid(t, "approve", res, "confirmed "+a)
	wantSeat(t, m.reg(a), events.ModeInPerson, 1)
	wantSaid(t, "approve when full", m.act(kindApprove, b), "waitlisted "+b)
	wantWaiting(t, m.s, events.ModeInPerson, b)
	wantReply(t, "approve twice", m.act(kindApprove, a), "conflict")

	res = m.act(kindReject, b)
	wantSaid(t, "reject", res, "rejected "+b)
	if r := m.reg(b); r.Status != events.StatusRejected || r.Reason != "organizer" {
		t.Fatalf("rejected %+v", *r)
	}
	wantWaiting(t, m.s, events.ModeInPerson)
	res, again := m.register("b@example.org", events.ModeInPerson, false)
	wantSaid(t, "the rejected address again", res, "pending "+again)
}

func TestDecideDuplicates(t *testing.T) {
	m := newSim(t, rules{inPerson: 1, waitlist: true})
	_, ada := m.register("Ada@Example.org", events.ModeInPerson, true)
	_, w := m.register("w@example.org", events.ModeInPerson, true)
	n := len(m.s.regs)
	for _, tc := range []struct{ email, mode string }{
		{"ada@example.org", events.ModeInPerson},
		{"ADA@EXAMPLE.ORG", events.ModeOnline},
		{"W@example.org", events.ModeOnline}, // waitlisted: a duplicate too, never a seat
	} {
		res, _ := m.register(tc.email, tc.mode, true)
		holder := ada
		if strings.HasPrefix(strings.ToLower(tc.email), "w@") {
			holder = w
		}
		wantSaid(t, tc.email, res, "duplicate_attempt "+holder)
		if len(res.changed) != 0 || len(m.s.regs) != n {
			t.Fatalf("%s: a duplicate changed %d registrations", tc.email, len(res.changed))
		}
		if o := res.outcomes[0].reg; o.Email != m.reg(holder).Email || o.Reason != "duplicate_attempt" {
			t.Fatalf("%s: duplicate about %+v", tc.email, o)
		}
	}
	m.act(kindCancel, ada)
	res, again := m.register("ada@example.org", events.ModeInPerson, true)
	wantSaid(t, "after cancelling", res, "waitlisted "+again) // w got the freed seat
	wantSeat(t, m.reg(w), events.ModeInPerson, 1)
}

func TestDecideErase(t *testing.T) {
	m := newSim(t, rules{inPerson: 1, waitlist: true})
	_, a := m.register("a@example.org", events.ModeInPerson, true)
	_, w := m.register("w@example.org", events.ModeInPerson, true)
	res := m.decide(&request{Kind: kindErase, RegID: a, LinkVersion: 1})
	wantSaid(t, "erase", res, "erased "+a, "promoted "+w)
	r := m.reg(a)
	if r.Name != "" || r.Email != "" || r.Answers != nil || r.Timezone != "" || r.Meta != nil {
		t.Fatalf("personal data left after erasure: %+v", *r)
	}
	if r.Status != events.StatusCancelled || r.ErasedAt == nil || !r.ErasedAt.Equal(m.now) || r.Seat != 0 {
		t.Fatalf("erased registration %+v", *r)
	}
	if o := res.outcomes[0].reg; o.Name != "" || o.Email != "" {
		t.Fatalf("the erased outcome names the person: %+v", o)
	}
	wantSeat(t, m.reg(w), events.ModeInPerson, 1)
	wantReply(t, "cancel an erased", m.act(kindCancel, a), "not_found")
	wantSaid(t, "erase twice", m.decide(&request{Kind: kindErase, RegID: a, LinkVersion: 1}))

	t.Run("retention erases the whole event", func(t *testing.T) {
		m := newSim(t, rules{inPerson: 1, online: 1, waitlist: true})
		m.registerMany(3, events.ModeInPerson)                       // confirmed, waitlisted, waitlisted
		_, c := m.register("c@example.org", events.ModeOnline, true) // confirmed
		m.register("d@example.org", events.ModeOnline, false)        // rejected: full
		m.act(kindCancel, c)
		m.register("x@other.example", events.ModeOnline, true)
		other := m.decide(&request{Kind: kindCancel, RegID: "reg-1", EventID: "ev-2"})
		wantReply(t, "another event's registration", other, "not_found")

		res := m.decide(&request{Kind: kindRetention})
		erased := 0
		for _, o := range res.outcomes {
			if o.typ != events.RegistrationErased || o.reason != "retention" {
				t.Fatalf("retention announced %s (%s) about %s", o.typ, o.reason, o.reg.ID)
			}
			erased++
		}
		if erased != len(m.s.regs) {
			t.Fatalf("%d erased of %d registrations", erased, len(m.s.regs))
		}
		for id, r := range m.s.regs {
			if r.ErasedAt == nil || r.Name != "" || r.Email != "" || r.Answers != nil || r.live() {
				t.Fatalf("%s after retention: %+v", id, *r)
			}
		}
		if len(m.s.byAddr) != 0 || len(m.s.seated[events.ModeInPerson])+len(m.s.seated[events.ModeOnline]) != 0 {
			t.Fatalf("retention left addresses %v or seats %v", m.s.byAddr, m.s.seated)
		}
		wantSaid(t, "retention again", m.decide(&request{Kind: kindRetention}))
	})
}

func TestDecideLinkVersion(t *testing.T) {
	m := newSim(t, rules{})
	_, a := m.register("a@example.org", events.ModeOnline, false)
	res := m.decide(&request{Kind: kindCancel, RegID: a, LinkVersion: 2})
	wantReply(t, "a link from the future", res, "link_invalid")
	if len(res.changed) != 0 || m.reg(a).Status != events.StatusConfirmed {
		t.Fatalf("an invalid link changed %+v", *m.reg(a))
	}

	res = m.act(kindRotate, a)
	wantSaid(t, "rotate", res, "updated "+a)
	if r := m.reg(a); r.LinkVersion != 2 || res.outcomes[0].reg.Reason != "links_rotated" || res.outcomes[0].reg.LinkVersion != 2 {
		t.Fatalf("after rotating: link version %d, outcome %+v", r.LinkVersion, res.outcomes[0].reg)
	}
	name := "Ada"
	for _, kind := range []string{kindCancel, kindEdit, kindSwitch, kindResend, kindErase} {
		res := m.decide(&request{Kind: kind, RegID: a, LinkVersion: 1, Mode: events.ModeInPerson, Edit: &editData{Name: &name}})
		wantReply(t, kind+" with the old link", res, "link_invalid")
		wantSaid(t, kind+" with the old link", res)
	}
	res = m.decide(&request{Kind: kindEdit, RegID: a, LinkVersion: 2, Edit: &editData{Name: &name}})
	wantReply(t, "edit with the new link", res, replyOK)
	if m.reg(a).Name != "Ada" || res.reply.Registration == nil || res.reply.Registration.Name != "Ada" {
		t.Fatalf("edit with the new link: %+v", res.reply.Registration)
	}
	wantReply(t, "unknown registration", m.act(kindCancel, "reg-404"), "not_found")
}

func TestDecideCheckIn(t *testing.T) {
	m := newSim(t, rules{inPerson: 1, waitlist: true})
	_, a := m.register("a@example.org", events.ModeInPerson, true)
	_, w := m.register("w@example.org", events.ModeInPerson, true)
	wantReply(t, "check in a waitlisted", m.act(kindCheckIn, w), "conflict")
	if m.reg(w).CheckedInAt != nil {
		t.Fatal("a waitlisted registration was checked in")
	}
	res := m.act(kindCheckIn, a)
	wantSaid(t, "check in", res, "updated "+a)
	at := m.now
	if c := m.reg(a).CheckedInAt; c == nil || !c.Equal(at) {
		t.Fatalf("checked in at %v, want %v", c, at)
	}
	res = m.act(kindCheckIn, a)
	wantReply(t, "check in twice", res, replyOK)
	wantSaid(t, "check in twice", res)
	if c := m.reg(a).CheckedInAt; !c.Equal(at) || len(res.changed) != 0 {
		t.Fatalf("a second check-in moved the time to %v", c)
	}
}

// Random requests of every kind, against several kinds of event: after
// each one checkState holds, and the waiting list is served first come,
// first served.
func TestDecideInvariantsHoldUnderRandomRequests(t *testing.T) {
	for _, r := range []rules{
		{inPerson: 3, online: 2, waitlist: true},
		{inPerson: 2, online: 0, waitlist: true, manual: true},
		{inPerson: 4, online: 1},
		{inPerson: 0, online: 0},
	} {
		t.Run(fmt.Sprintf("%+v", r), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(r.inPerson*10+r.online)))
			m := newSim(t, r)
			pick := func() string {
				ids := slices.Sorted(maps.Keys(m.s.regs))
				if len(ids) == 0 {
					return "reg-0"
				}
				return ids[rng.IntN(len(ids))]
			}
			mode := func() string { return modes[rng.IntN(2)] }
			for range 1500 {
				switch k := rng.IntN(12); k {
				case 0, 1, 2, 3:
					email := fmt.Sprintf("p%d@example.org", rng.IntN(40))
					if rng.IntN(3) == 0 {
						email = strings.ToUpper(email[:2]) + email[2:]
					}
					m.register(email, mode(), rng.IntN(4) > 0)
				case 4:
					m.act(kindCancel, pick())
				case 5:
					m.switchTo(pick(), mode())
				case 6:
					m.act([]string{kindApprove, kindReject}[rng.IntN(2)], pick())
				case 7:
					m.act([]string{kindCheckIn, kindRotate, kindOrgCancel}[rng.IntN(3)], pick())
				case 8:
					if rng.IntN(8) == 0 {
						m.decide(&request{Kind: kindErase, RegID: pick()})
					}
				case 9:
					if rng.IntN(4) == 0 {
						m.setCapacity(rng.IntN(5), rng.IntN(3))
					}
				default:
					name := fmt.Sprintf("Name %d", rng.IntN(100))
					m.decide(&request{Kind: kindEdit, RegID: pick(), Edit: &editData{Name: &name}})
				}
			}
			// The run must have gone through what it is meant to test.
			for _, typ := range []string{events.RegistrationConfirmed, events.RegistrationCancelled,
				events.RegistrationDuplicateAttempt, events.RegistrationErased, events.RegistrationUpdated} {
				if m.said[typ] == 0 {
					t.Errorf("no %s in %v", typ, m.said)
				}
			}
			if r.waitlist && m.said[events.RegistrationPromoted] == 0 {
				t.Errorf("no promotion in %v", m.said)
			}
			t.Logf("outcomes: %v", m.said)
		})
	}
}

// A switch to a mode that does not exist (a hand-made form, say) is refused
// and changes nothing (no mode at all may be ignored); above all it must not crash the decider, which would
// meet the same request again after every restart.
func TestDecideRefusesUnknownModes(t *testing.T) {
	for _, mode := range []string{"hologram", ""} {
		for _, status := range []string{events.StatusConfirmed, events.StatusWaitlisted, events.StatusPending} {
			t.Run(fmt.Sprintf("%q from %s", mode, status), func(t *testing.T) {
				m := newSim(t, rules{inPerson: 1, waitlist: true, manual: status == events.StatusPending})
				_, id := m.register("a@example.org", events.ModeInPerson, true)
				if status == events.StatusWaitlisted {
					_, id = m.register("b@example.org", events.ModeInPerson, true)
				}
				before := *m.reg(id)
				var res result
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Fatalf("decide panicked: %v", p)
						}
					}()
					res = m.switchTo(id, mode)
				}()
				if mode != "" || res.reply.Status != replyOK { // no mode at all may be a no-op
					wantReply(t, "switch", res, "invalid")
				}
				if r := m.reg(id); r.Mode != before.Mode || r.Status != before.Status || r.Version != before.Version || len(res.changed) != 0 {
					t.Fatalf("switch to %q made %s %s (version %d → %d)", mode, r.Status, r.Mode, before.Version, r.Version)
				}
			})
		}
	}
}
