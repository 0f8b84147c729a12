package registration

import (
	"container/heap"
	"slices"

	"github.com/plenaryhq/plenary/pkg/events"
)

// eventState is what the decider knows of one event: its rules, every
// registration, who holds which address and seat, and the waiting lists in
// order. It lives in the memory of the one active decider, which alone
// changes registrations, and is rebuilt from the database when a decider
// takes over (DESIGN §5.5).
type eventState struct {
	ev      *Event
	regs    map[string]*Registration
	byAddr  map[string]string         // live address key → registration id
	seated  map[string]map[int]string // mode → seat number → registration id
	freed   map[string]*seatHeap      // mode → numbers given back, below high
	high    map[string]int            // mode → highest seat number handed out
	waiting map[string][]string       // mode → registration ids, first in line first
}

func newEventState(ev *Event) *eventState {
	s := &eventState{
		ev: ev, regs: map[string]*Registration{}, byAddr: map[string]string{},
		seated: map[string]map[int]string{}, freed: map[string]*seatHeap{},
		high: map[string]int{}, waiting: map[string][]string{},
	}
	for _, m := range modes {
		s.seated[m] = map[int]string{}
		s.freed[m] = &seatHeap{}
	}
	return s
}

var modes = []string{events.ModeInPerson, events.ModeOnline}

// load adds registrations read from the database (in any order) and
// rebuilds the seat numbers and waiting lists from them.
func (s *eventState) load(regs []Registration) {
	for i := range regs {
		r := &regs[i]
		s.regs[r.ID] = r
		if r.live() && r.ErasedAt == nil {
			s.byAddr[r.EmailKey] = r.ID
		}
		if r.Status == events.StatusConfirmed && r.Seat > 0 {
			s.seated[r.Mode][r.Seat] = r.ID
			s.high[r.Mode] = max(s.high[r.Mode], r.Seat)
		}
		if w := r.waitsFor(); w != "" {
			s.waiting[w] = append(s.waiting[w], r.ID)
		}
	}
	for _, m := range modes {
		for n := 1; n < s.high[m]; n++ {
			if _, taken := s.seated[m][n]; !taken {
				heap.Push(s.freed[m], n)
			}
		}
		slices.SortFunc(s.waiting[m], func(a, b string) int {
			qa, qb := s.regs[a].Queue, s.regs[b].Queue
			switch {
			case qa < qb:
				return -1
			case qa > qb:
				return 1
			}
			return 0
		})
	}
}

// waitsFor is the mode whose waiting list the registration is on, if any.
func (r *Registration) waitsFor() string {
	switch {
	case r.Status == events.StatusWaitlisted:
		return r.Mode
	case r.Status == events.StatusConfirmed && r.WantsMode != "":
		return r.WantsMode
	}
	return ""
}

// hasSeat reports whether someone new may be confirmed in mode now: it is
// unlimited, or fewer are confirmed than its capacity in force (after a cut
// there may be more, and then nobody is until enough have left).
func (s *eventState) hasSeat(mode string) bool {
	c := s.ev.capacityFor(mode)
	return c == 0 || len(s.seated[mode]) < c
}

// seatsLeft is the number of free seats per limited mode (never negative).
func (s *eventState) seatsLeft() map[string]int {
	out := map[string]int{}
	for _, m := range modes {
		if c := s.ev.capacityFor(m); c > 0 {
			out[m] = max(c-len(s.seated[m]), 0)
		}
	}
	return out
}

// seat gives r the lowest free seat number of mode. While fewer seats are
// taken than the capacity, that number is within it.
func (s *eventState) seat(r *Registration, mode string) {
	n := 0
	if h := s.freed[mode]; h.Len() > 0 {
		n = heap.Pop(h).(int)
	} else {
		s.high[mode]++
		n = s.high[mode]
	}
	r.Mode, r.Seat, r.Status = mode, n, events.StatusConfirmed
	s.seated[mode][n] = r.ID
}

// unseat gives back r's seat, if it holds one.
func (s *eventState) unseat(r *Registration) {
	if r.Seat == 0 {
		return
	}
	delete(s.seated[r.Mode], r.Seat)
	heap.Push(s.freed[r.Mode], r.Seat)
	r.Seat = 0
}

// enqueue puts r at the end of mode's waiting list; seq, the request's
// place in the stream, keeps the order when the list is rebuilt.
func (s *eventState) enqueue(r *Registration, mode string, seq uint64) {
	r.Queue = seq
	s.waiting[mode] = append(s.waiting[mode], r.ID)
}

// dequeue takes r off whatever waiting list it is on.
func (s *eventState) dequeue(r *Registration) {
	if w := r.waitsFor(); w != "" {
		s.waiting[w] = slices.DeleteFunc(s.waiting[w], func(id string) bool { return id == r.ID })
	}
	r.Queue, r.WantsMode = 0, ""
}

// position is r's place on its waiting list, from 1 (0 when not waiting).
func (s *eventState) position(r *Registration) int {
	return slices.Index(s.waiting[r.waitsFor()], r.ID) + 1
}

// release ends r's hold on a seat, a waiting list and its address, as a
// cancellation, rejection or erasure does.
func (s *eventState) release(r *Registration, status, reason string) {
	s.dequeue(r)
	s.unseat(r)
	delete(s.byAddr, r.EmailKey)
	r.Status, r.Reason = status, reason
	r.EmailKey, r.SeatKey = r.addressKey(), r.seatKey()
}

// seatHeap is a min-heap of seat numbers: a freed seat is handed out again
// before a new number, so numbers stay within the capacity.
type seatHeap []int

func (h seatHeap) Len() int           { return len(h) }
func (h seatHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h seatHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seatHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *seatHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	*h = old[:len(old)-1]
	return n
}
