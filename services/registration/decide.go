package registration

import (
	"slices"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

// outcome is one event a decision announces about a registration.
type outcome struct {
	typ    string
	reg    Registration // as it stood after the decision
	reason string
}

// result is what deciding one request changed and announces.
type result struct {
	changed  []Registration // after-states, in the order they must be written
	outcomes []outcome
	event    *Event // the event's new version, for event_update
	reply    reply
}

// decision is one request being decided: it records every registration it
// touches, in order, so they can be written in an order that never breaks
// a unique index on the way (a seat is given back before it is given).
type decision struct {
	s       *eventState
	seq     uint64
	now     time.Time
	touched []*Registration
	res     result
}

func (d *decision) touch(r *Registration) {
	for _, t := range d.touched {
		if t == r {
			return
		}
	}
	d.touched = append(d.touched, r)
}

func (d *decision) announce(typ string, r *Registration, reason string) {
	d.touch(r)
	d.res.outcomes = append(d.res.outcomes, outcome{typ: typ, reg: *r, reason: reason})
}

func (d *decision) fail(status, detail string) {
	d.res.reply = reply{Status: status, Detail: detail}
}

// decide applies req to the event's state and returns what changed. It is
// deterministic given the state and the request, and never touches I/O.
func (s *eventState) decide(req *request, seq uint64, now time.Time) result {
	d := &decision{s: s, seq: seq, now: now.UTC()}
	d.res.reply.Status = replyOK
	switch req.Kind {
	case kindRegister:
		d.register(req)
	case kindEventUpdate:
		d.updateEvent(req)
	case kindRetention:
		d.retention()
	default:
		r := s.regs[req.RegID]
		switch {
		case r == nil || r.EventID != req.EventID:
			d.fail("not_found", "no such registration")
		case req.LinkVersion != 0 && req.LinkVersion != r.LinkVersion:
			d.fail("link_invalid", "this link is not valid any more")
		case r.ErasedAt != nil && req.Kind != kindErase:
			d.fail("not_found", "this registration was erased")
		default:
			d.change(req, r)
		}
	}
	d.settle()
	for _, r := range d.touched {
		r.UpdatedAt = d.now
		r.EmailKey, r.SeatKey = r.addressKey(), r.seatKey()
		d.res.changed = append(d.res.changed, *r)
	}
	// Outcomes carry the final state of their registration: a promotion
	// later in the same decision must not leave an earlier outcome stale
	// on versions.
	for i := range d.res.outcomes {
		r := s.regs[d.res.outcomes[i].reg.ID]
		d.res.outcomes[i].reg = *r
		if reason := d.res.outcomes[i].reason; reason != "" {
			d.res.outcomes[i].reg.Reason = reason
		}
	}
	if d.res.reply.Status == replyOK && req.RegID != "" {
		if r := s.regs[req.RegID]; r != nil {
			cp := *r
			d.res.reply.Registration = &cp
		}
	}
	return d.res
}

func (d *decision) bump(r *Registration) {
	d.touch(r)
	r.Version++
}

// register places a new registration: awaiting approval, on a seat, on the
// waiting list, or turned away as full. An address that is registered
// already gets a duplicate-attempt notice about its registration instead.
func (d *decision) register(req *request) {
	s, n := d.s, req.Register
	if n == nil || !validMode(n.Mode) {
		d.fail("invalid", "no valid registration in the request")
		return
	}
	key := emailKey(req.EventID, n.Email)
	if r, ok := s.regs[n.ID]; ok && r.RequestID == req.ID {
		// This very request, decided before a conflict made it be decided
		// again: announce what it decided.
		d.announce(statusEvent(r.Status), r, r.Reason)
		return
	}
	if id, ok := s.byAddr[key]; ok {
		existing := s.regs[id]
		d.res.outcomes = append(d.res.outcomes, outcome{typ: events.RegistrationDuplicateAttempt, reg: *existing, reason: "duplicate_attempt"})
		return
	}
	r := &Registration{
		ID: n.ID, EventID: req.EventID, Email: n.Email, Name: n.Name, Mode: n.Mode, Locale: n.Locale,
		Timezone: n.Timezone, Answers: n.Answers, Consent: n.Consent, WaitlistOK: n.WaitlistOK,
		RequestID: req.ID, Version: 1, LinkVersion: 1, CreatedAt: req.At.UTC(),
	}
	s.regs[r.ID] = r
	d.touch(r)
	switch {
	case s.ev.Registration.Approval == ApprovalManual:
		r.Status = events.StatusPending
	case s.hasSeat(r.Mode) && len(s.waiting[r.Mode]) == 0:
		s.seat(r, r.Mode)
	case s.ev.Registration.Waitlist && r.WaitlistOK:
		r.Status = events.StatusWaitlisted
		s.enqueue(r, r.Mode, d.seq)
	default:
		r.Status, r.Reason = events.StatusRejected, "full"
		d.announce(events.RegistrationRejected, r, "full")
		r.EmailKey = r.addressKey()
		return
	}
	r.EmailKey = r.addressKey()
	s.byAddr[r.EmailKey] = r.ID
	d.announce(statusEvent(r.Status), r, "")
}

// change applies a request about an existing registration.
func (d *decision) change(req *request, r *Registration) {
	s := d.s
	needLive := func() bool {
		if r.live() {
			return true
		}
		d.fail("conflict", "this registration is "+r.Status)
		return false
	}
	switch req.Kind {
	case kindCancel, kindOrgCancel:
		if r.Status == events.StatusCancelled {
			return // cancelled already: nothing more to do
		}
		if !needLive() {
			return
		}
		reason := "participant"
		if req.Kind == kindOrgCancel {
			reason = "organizer"
		}
		d.bump(r)
		s.release(r, events.StatusCancelled, reason)
		d.announce(events.RegistrationCancelled, r, reason)
	case kindReject:
		if !needLive() {
			return
		}
		d.bump(r)
		s.release(r, events.StatusRejected, "organizer")
		d.announce(events.RegistrationRejected, r, "organizer")
	case kindApprove:
		if r.Status != events.StatusPending {
			d.fail("conflict", "only a registration awaiting approval can be approved; this one is "+r.Status)
			return
		}
		d.bump(r)
		if s.hasSeat(r.Mode) && len(s.waiting[r.Mode]) == 0 {
			s.seat(r, r.Mode)
		} else {
			r.Status = events.StatusWaitlisted
			s.enqueue(r, r.Mode, d.seq)
		}
		d.announce(statusEvent(r.Status), r, "approved")
	case kindSwitch:
		if !validMode(req.Mode) {
			d.fail("invalid", "mode must be in_person or online")
			return
		}
		if needLive() {
			d.switchMode(r, req.Mode)
		}
	case kindEdit:
		if !needLive() {
			return
		}
		// A change of mode comes first: refused, it leaves the details
		// as they were too.
		if req.Mode != "" {
			if !validMode(req.Mode) {
				d.fail("invalid", "mode must be in_person or online")
				return
			}
			if d.switchMode(r, req.Mode); d.res.reply.Status != replyOK {
				return
			}
		}
		if e := req.Edit; e != nil {
			if e.Name != nil {
				r.Name = *e.Name
			}
			if e.Answers != nil {
				r.Answers = e.Answers
			}
			if e.Locale != nil {
				r.Locale = *e.Locale
			}
			if e.Timezone != nil {
				r.Timezone = *e.Timezone
			}
			d.bump(r)
			d.announce(events.RegistrationUpdated, r, "details_changed")
		}
	case kindCheckIn:
		if r.Status != events.StatusConfirmed {
			d.fail("conflict", "only a confirmed registration can be checked in; this one is "+r.Status)
			return
		}
		if r.CheckedInAt == nil {
			at := d.now
			r.CheckedInAt = &at
			d.bump(r)
			d.announce(events.RegistrationUpdated, r, "checked_in")
		}
	case kindRotate:
		r.LinkVersion++
		d.bump(r)
		d.announce(events.RegistrationUpdated, r, "links_rotated")
	case kindResend:
		d.res.outcomes = append(d.res.outcomes, outcome{typ: events.RegistrationLinkRequested, reg: *r, reason: "link_requested"})
	case kindErase:
		d.erase(r, "participant")
	default:
		d.fail("invalid", "unknown request kind "+req.Kind)
	}
}

// switchMode moves a live registration to mode in one step: onto a free
// seat there (giving its old one to the next in line), or onto that mode's
// waiting list, keeping its current seat until it gets one.
func (d *decision) switchMode(r *Registration, mode string) {
	s := d.s
	if mode == r.Mode {
		if r.WantsMode != "" { // back to where it sits: stop waiting
			s.dequeue(r)
			d.bump(r)
			d.announce(events.RegistrationUpdated, r, "switch_withdrawn")
		}
		return
	}
	if mode == r.WantsMode {
		return // waiting for it already
	}
	free := s.hasSeat(mode) && len(s.waiting[mode]) == 0
	if r.Status == events.StatusPending {
		r.Mode = mode
		d.bump(r)
		d.announce(events.RegistrationUpdated, r, "mode_switched")
		return
	}
	if !free && !s.ev.Registration.Waitlist {
		d.fail("full", "attendance "+modeText(mode)+" is full")
		return
	}
	waiting := r.Status == events.StatusWaitlisted
	s.dequeue(r) // its place on the old list, or a switch it waited for before
	d.bump(r)
	switch {
	case free && waiting:
		s.seat(r, mode)
		d.announce(events.RegistrationPromoted, r, "mode_switched")
	case free:
		s.unseat(r)
		s.seat(r, mode)
		d.announce(events.RegistrationUpdated, r, "mode_switched")
	case waiting:
		r.Mode = mode
		s.enqueue(r, mode, d.seq)
		d.announce(events.RegistrationWaitlisted, r, "mode_switched")
	default: // confirmed: waits there, keeping its seat here
		r.WantsMode = mode
		s.enqueue(r, mode, d.seq)
		d.announce(events.RegistrationUpdated, r, "switch_waitlisted")
	}
}

// erase anonymises r: whatever it held is given back, and nothing that
// names the person stays.
func (d *decision) erase(r *Registration, reason string) {
	if r.ErasedAt != nil {
		return
	}
	if r.live() {
		d.s.release(r, events.StatusCancelled, "erased")
	}
	at := d.now
	r.ErasedAt = &at
	r.Name, r.Email, r.Timezone, r.Answers, r.Meta = "", "", "", nil, nil
	d.bump(r)
	d.announce(events.RegistrationErased, r, reason)
}

// retentionChunk bounds the registrations one retention request
// anonymises, so its journal entry stays far below MongoDB's 16 MiB
// document limit; retain asks as many times as needed.
const retentionChunk = 200

// retention anonymises registrations of an event whose retention period is
// over, up to retentionChunk of them.
func (d *decision) retention() {
	ids := make([]string, 0, len(d.s.regs))
	for id, r := range d.s.regs {
		if r.ErasedAt == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids[:min(len(ids), retentionChunk)] {
		d.erase(d.s.regs[id], "retention")
	}
}

// updateEvent makes an organiser's edit the event's new version, if it was
// made from the version in force.
func (d *decision) updateEvent(req *request) {
	s := d.s
	if req.Event == nil || req.From != s.ev.Version {
		d.fail("event_changed", "someone else changed this event meanwhile; load it again and repeat your change")
		return
	}
	next := *req.Event
	next.Version = s.ev.Version + 1
	next.UpdatedAt = d.now
	next.Revision = req.ID
	s.ev = &next
	d.res.event = &next
	d.res.reply.Event = &next
}

// settle gives every free seat to the next in line, until no mode has both
// a free seat and someone waiting: one promotion per freed seat, at once.
func (d *decision) settle() {
	s := d.s
	for moved := true; moved; {
		moved = false
		for _, m := range modes {
			for s.hasSeat(m) && len(s.waiting[m]) > 0 {
				r := s.regs[s.waiting[m][0]]
				s.dequeue(r)
				d.bump(r)
				if r.Status == events.StatusConfirmed { // switching from the other mode
					s.unseat(r)
				}
				s.seat(r, m)
				d.announce(events.RegistrationPromoted, r, "")
				moved = true
			}
		}
	}
}

// validMode guards the decider against a request no handler would send:
// the state has lists only for the two modes.
func validMode(mode string) bool {
	return mode == events.ModeInPerson || mode == events.ModeOnline
}

func modeText(mode string) string {
	if mode == events.ModeOnline {
		return "online"
	}
	return "in person"
}
