package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/store"
)

// Email kinds, as recorded in the email log and carried by mail jobs.
const (
	kindConfirmation = "confirmation"
	kindWaitlisted   = "waitlisted"
	kindPending      = "pending"
	kindRejected     = "rejected"
	kindDuplicate    = "duplicate"
	kindPromoted     = "promoted"
	kindCancelled    = "cancelled"
	kindSwitched     = "switched"
	kindLinks        = "links"
)

// emailKind maps a registration event (its type, and the reason of an
// update) to the email it triggers.
func emailKind(typ, reason string) (string, bool) {
	switch typ {
	case events.RegistrationPromoted:
		return kindPromoted, true
	case events.RegistrationCancelled:
		return kindCancelled, true
	case events.RegistrationLinkRequested:
		return kindLinks, true
	case events.RegistrationUpdated:
		switch reason {
		case "mode_switched":
			return kindSwitched, true
		case "links_rotated":
			return kindLinks, true
		}
		return "", false
	case events.RegistrationConfirmed:
		if reason == "approved" { // an organiser approved it, and a seat was free
			return kindApproved, true
		}
		return kindConfirmation, true
	case events.RegistrationWaitlisted:
		if reason == "approved" { // an organiser approved it, but the mode is full
			return kindApproved, true
		}
		return kindWaitlisted, true
	case events.RegistrationPending:
		return kindPending, true
	case events.RegistrationRejected:
		return kindRejected, true
	case events.RegistrationDuplicateAttempt:
		return kindDuplicate, true
	}
	return "", false
}

// duplicateWindow bounds "already registered" emails: at most one per
// registration (that is, per address and event) in each window, however
// often someone submits the form with that address (DESIGN §6).
const duplicateWindow = 10 * time.Minute

// dedupeKey names the email a message asks for, so that every delivery and
// replay of it names the same email. A registration gets one email per kind
// and version; duplicate attempts get one per registration and
// duplicateWindow, keyed by the window the attempt's message was made in.
func dedupeKey(kind string, reg events.Registration, env events.Envelope) string {
	if kind == kindDuplicate {
		return fmt.Sprintf("duplicate:%s:%d", reg.ID, env.Time.Truncate(duplicateWindow).Unix())
	}
	if kind == kindLinks {
		// Each request for the links is its own email; the registration
		// service limits how often one may ask.
		return fmt.Sprintf("links:%s:%s", reg.ID, env.ID)
	}
	return fmt.Sprintf("%s:%s:%d", kind, reg.ID, reg.Version)
}

// jobID turns a dedupe key into the mail job id, which becomes the local part
// of the email's Message-ID, where ':' is not allowed.
func jobID(key string) string {
	return strings.ReplaceAll(key, ":", ".")
}

// notifier turns registration events into mail jobs.
type notifier struct {
	bus    *bus.Bus
	emails *emailStore
	people *participants
	events *eventReplica
	tmpl   *templates
	log    *slog.Logger
	jobs   *prometheus.CounterVec
}

func newNotifier(deps *service.Deps, emails *emailStore, people *participants, evs *eventReplica, tmpl *templates, log *slog.Logger) *notifier {
	n := &notifier{
		bus: deps.Bus, emails: emails, people: people, events: evs, tmpl: tmpl, log: log,
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notification_mail_jobs_total",
			Help: "Mail jobs by kind and outcome (queued, republished, already_handled).",
		}, []string{"kind", "outcome"}),
	}
	deps.Metrics.MustRegister(n.jobs)
	return n
}

// handleRegistrations turns a batch of registration events into emails:
// each version goes into the participants replica, each event that calls
// for an email is rendered, and all of them are claimed and queued at once
// (queue). An erasure forgets the registration here too.
func (n *notifier) handleRegistrations(ctx context.Context, ds []bus.Delivery) []error {
	errs := make([]error, len(ds))
	// Erasures first in mind, last in deed: a registration erased in this
	// batch gets no version kept and no email from the messages before its
	// erasure, and the erasure runs after the batch's writes.
	regs := make([]*events.Registration, len(ds))
	erased := map[string]string{} // registration → event
	for i, d := range ds {
		if !strings.HasPrefix(d.Envelope.Type, "registration.v1.registration.") {
			continue // events and attendance: not ours here
		}
		var reg events.Registration
		if err := d.Envelope.Decode(&reg); err != nil {
			errs[i] = bus.Permanent(err)
			continue
		}
		if reg.ID == "" {
			errs[i] = bus.Permanent(fmt.Errorf("%s %s: registration without id", d.Envelope.Type, d.Envelope.ID))
			continue
		}
		if d.Envelope.Type == events.RegistrationErased {
			erased[reg.ID] = reg.EventID
			continue
		}
		regs[i] = &reg
	}
	var versions []participant
	var recs []emailRecord
	var owner []int // recs[j] is for ds[owner[j]]
	for i, reg := range regs {
		if reg == nil {
			continue
		}
		if _, gone := erased[reg.ID]; gone {
			continue
		}
		versions = append(versions, participantOf(*reg, ds[i].Envelope.Time))
		rec, ok, err := n.registrationEmail(ds[i], *reg)
		switch {
		case err != nil:
			errs[i] = err
		case ok:
			recs = append(recs, rec)
			owner = append(owner, i)
		}
	}
	if err := n.events.add(ctx, eventVersions(regs, ds)); err != nil {
		return bus.ErrBatch(len(ds), err)
	}
	if err := n.people.record(ctx, versions); err != nil {
		return bus.ErrBatch(len(ds), err)
	}
	for j, err := range n.queue(ctx, recs) {
		if err != nil {
			errs[owner[j]] = err
		}
	}
	for i, d := range ds {
		if d.Envelope.Type != events.RegistrationErased || errs[i] != nil {
			continue
		}
		var reg events.Registration
		_ = d.Envelope.Decode(&reg)
		if err := n.people.erase(ctx, reg.ID, erased[reg.ID]); err != nil {
			errs[i] = err
		}
	}
	return errs
}

// registrationEmail renders the email a registration event calls for, if
// any.
func (n *notifier) registrationEmail(d bus.Delivery, reg events.Registration) (emailRecord, bool, error) {
	kind, ok := emailKind(d.Envelope.Type, reg.Reason)
	if !ok {
		return emailRecord{}, false, nil
	}
	if err := checkRegistration(reg); err != nil {
		return emailRecord{}, false, bus.Permanent(fmt.Errorf("%s %s: %w", d.Envelope.Type, d.Envelope.ID, err))
	}
	id := jobID(dedupeKey(kind, reg, d.Envelope))
	msg, err := n.tmpl.renderRegistration(kind, reg, d.Envelope.Time)
	if err != nil {
		return emailRecord{}, false, bus.Permanent(fmt.Errorf("render %s for registration[%s]: %w", kind, reg.ID, err))
	}
	return emailRecord{
		ID: id, EventID: reg.EventID, RegistrationID: reg.ID, Kind: kind,
		To: strings.TrimSpace(reg.Email), ToName: msg.toName, Subject: msg.subject,
		Text: msg.text, HTML: msg.html, Attachments: msg.attachments,
		CreatedAt: time.Now().UTC(), TraceParent: d.TraceParent,
	}, true, nil
}

// checkRegistration rejects payloads no email can be made from.
func checkRegistration(reg events.Registration) error {
	if reg.ID == "" {
		return errors.New("registration without id")
	}
	addr := strings.TrimSpace(reg.Email)
	if addr == "" || strings.ContainsAny(addr, "\r\n") {
		return fmt.Errorf("registration[%s]: no usable email address", reg.ID)
	}
	if _, err := mail.ParseAddress(addr); err != nil {
		return fmt.Errorf("registration[%s]: invalid email address", reg.ID)
	}
	return nil
}

// handleStatuses records mailer status reports, many with one InsertMany.
// Reports are only inserted, never merged into the email record: the
// latest is chosen when read.
func (n *notifier) handleStatuses(ctx context.Context, ds []bus.Delivery) []error {
	errs := make([]error, len(ds))
	var recs []statusRecord
	for i, d := range ds {
		var st events.MailStatus
		if err := d.Envelope.Decode(&st); err != nil {
			errs[i] = bus.Permanent(err)
			continue
		}
		if st.JobID == "" {
			errs[i] = bus.Permanent(fmt.Errorf("%s %s: status without job id", d.Envelope.Type, d.Envelope.ID))
			continue
		}
		if st.Status == "" {
			st.Status = strings.TrimPrefix(d.Subject, "mail.v1.status.")
		}
		if st.At.IsZero() {
			st.At = d.Envelope.Time
		}
		recs = append(recs, statusRecord{
			ID: d.Envelope.ID, JobID: st.JobID, EventID: st.EventID, Status: st.Status,
			Attempt: st.Attempt, Detail: st.Detail, At: st.At.UTC(),
		})
	}
	if err := n.emails.addStatuses(ctx, recs); err != nil {
		return bus.ErrBatch(len(ds), err)
	}
	return errs
}

// eventOf returns the newest version of the event notification knows: from
// the events replica, or, for an event whose messages it never kept, from
// what participant versions stored before the replica took the copies.
func (n *notifier) eventOf(ctx context.Context, eventID string) (events.Event, error) {
	ev, err := n.events.get(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) {
		return n.people.legacyEvent(ctx, eventID)
	}
	return ev, err
}

// eventVersions returns each event version the registrations carry, once,
// as copies for the events replica: agenda notices, announcements and the
// unsubscribe page read the event there, also one whose own messages have
// not arrived (or were never seen).
func eventVersions(regs []*events.Registration, ds []bus.Delivery) []eventRecord {
	seen := map[string]bool{}
	var out []eventRecord
	for i, reg := range regs {
		if reg == nil || reg.Event.ID == "" || reg.Event.Version < 1 {
			continue
		}
		id := fmt.Sprintf("%s:%d:copy", reg.Event.ID, reg.Event.Version)
		if seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, eventRecord{ID: id, EventID: reg.Event.ID, Version: reg.Event.Version,
			Event: reg.Event, MsgID: ds[i].Envelope.ID, ReceivedAt: time.Now().UTC(), Copy: true})
	}
	return out
}
