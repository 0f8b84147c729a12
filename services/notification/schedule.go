package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/store"
)

// Collections of the scheduler. All are small and only inserted into.
const (
	// roundsCollection records the reminder rounds done, one document per
	// event, offset and start time, so later loops skip them.
	roundsCollection = "reminder_rounds"
	// leasesCollection holds short claims on scheduled work (a reminder
	// round, an agenda notice), so that replicas do not all render the
	// same thousands of emails at once. The per-email claims stay the
	// fence; a lease only saves work.
	leasesCollection = "schedule_leases"
)

// fanOutChunk is how many emails are rendered, claimed and queued at once:
// one InsertMany and one atomic publish per chunk (DESIGN §9).
const fanOutChunk = 500

// scheduler sends the emails that are due at a time rather than on a
// message: reminders and agenda change notices. Every replica runs one,
// every interval; claims keep them from sending anything twice.
type scheduler struct {
	n        *notifier
	events   *eventReplica
	releases *releaseReplica
	rounds   *mongo.Collection
	notices  *mongo.Collection
	leases   *mongo.Collection
	interval time.Duration
	debounce time.Duration
	public   *url.URL
	holder   string // this replica, in the leases it takes
	log      *slog.Logger
	ticks    prometheus.Counter
	now      func() time.Time

	lastPrune time.Time
}

func newScheduler(deps *service.Deps, n *notifier, evs *eventReplica, rels *releaseReplica, cfg Config, public *url.URL, log *slog.Logger) *scheduler {
	s := &scheduler{
		n: n, events: evs, releases: rels,
		rounds:   deps.DB.Collection(roundsCollection),
		notices:  deps.DB.Collection(noticesCollection),
		leases:   deps.DB.Collection(leasesCollection),
		interval: cfg.ReminderInterval, debounce: cfg.AgendaNoticeDebounce,
		public: public, holder: events.NewID(), log: log.With("component", "scheduler"),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "notification_scheduler_loops_total",
			Help: "Completed passes of the reminder and agenda-notice scheduler.",
		}),
		now: time.Now,
	}
	if s.interval <= 0 {
		s.interval = defaultReminderInterval
	}
	if s.debounce <= 0 {
		s.debounce = defaultAgendaNoticeDebounce
	}
	deps.Metrics.MustRegister(s.ticks)
	return s
}

// Defaults of the scheduler's configuration, for a Config not read from
// the environment.
const (
	defaultReminderInterval     = 30 * time.Second
	defaultAgendaNoticeDebounce = 10 * time.Minute
)

// run looks for due work at once (after a downtime, due reminders go out
// late while still before the start) and then every interval, until ctx
// ends. A failed pass is logged and tried again at the next.
func (s *scheduler) run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pass does one round of the scheduler's work.
func (s *scheduler) pass(ctx context.Context) {
	now := s.now()
	if err := s.remind(ctx, now); err != nil && ctx.Err() == nil {
		s.log.Warn("reminders: will try again", "err", err)
	}
	if err := s.announce(ctx, now); err != nil && ctx.Err() == nil {
		s.log.Warn("agenda notices: will try again", "err", err)
	}
	if now.Sub(s.lastPrune) > time.Hour {
		if _, err := s.leases.DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: now.Add(-24 * time.Hour)}}}}); err == nil {
			s.lastPrune = now
		}
	}
	s.ticks.Inc()
}

// attends reports whether someone attending in mode can take part in a
// session of format.
func attends(mode, format string) bool {
	switch format {
	case events.FormatInPerson:
		return mode != events.ModeOnline
	case events.FormatOnline:
		return mode == events.ModeOnline
	}
	return true // hybrid (or a format this code does not know)
}

// sessionJoinURL is a participant's personal link into one session:
// <join_url>?session=<id>. "" when there is no join link.
func sessionJoinURL(join, sessionID string) string {
	if join == "" {
		return ""
	}
	u, err := url.Parse(join)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("session", sessionID)
	u.RawQuery = q.Encode()
	return u.String()
}

// publicSite parses PUBLIC_URL ("" is the local default).
func publicSite(raw string) (*url.URL, error) {
	if raw == "" {
		raw = "http://localhost:8080"
	}
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("PUBLIC_URL %q is not an http(s) URL such as https://plenary.example.org", raw)
	}
	// The unsubscribe link goes into a List-Unsubscribe header, which the
	// mailer keeps under 900 bytes: a longer base would fail every
	// announcement.
	if len(u.String()) > maxPublicURL {
		return nil, fmt.Errorf("PUBLIC_URL is %d characters long; at most %d fit the List-Unsubscribe header of announcements", len(u.String()), maxPublicURL)
	}
	return u, nil
}

const maxPublicURL = 600

// agendaURL is the event's public agenda page.
func (s *scheduler) agendaURL(slug string) string {
	if slug == "" {
		return ""
	}
	return s.public.String() + "/e/" + url.PathEscape(slug) + "/agenda"
}

// record renders a letter into the email record claimed under key.
func (s *scheduler) record(l letter, p participant, key string, atts []attachment) (emailRecord, bool, error) {
	if err := checkRegistration(events.Registration{ID: p.RegistrationID, Email: p.Email}); err != nil {
		return emailRecord{}, false, bus.Permanent(err)
	}
	msg, err := s.n.tmpl.render(l)
	if err != nil {
		return emailRecord{}, false, bus.Permanent(fmt.Errorf("render %s for registration[%s]: %w", l.Kind, p.RegistrationID, err))
	}
	return emailRecord{
		ID: jobID(key), EventID: p.EventID, RegistrationID: p.RegistrationID, Kind: l.Kind,
		To: l.To, ToName: msg.toName, Subject: msg.subject, Text: msg.text, HTML: msg.html,
		Attachments: append(msg.attachments, atts...), CreatedAt: time.Now().UTC(),
	}, true, nil
}

// fanOut renders and queues an email for each confirmed participant that
// build makes one for, a chunk at a time, and returns how many were
// queued (or claimed before). A chunk is queued (stored and published,
// mostly waiting for FerretDB and NATS) while the next one is rendered
// (CPU). An email that can never be sent (no usable address, a template
// that fails) is logged and left out; any other error is returned once
// every chunk was tried, so the work is tried again and the claims keep
// what was queued from going out twice.
func (s *scheduler) fanOut(ctx context.Context, log *slog.Logger, people []participant,
	build func(p participant) (emailRecord, bool, error)) (int, error) {
	type queued struct {
		n    int
		errs []error
	}
	chunks := make(chan []emailRecord, 1)
	done := make(chan queued, 1)
	go func() {
		var q queued
		for recs := range chunks {
			for i, err := range s.n.queue(ctx, recs) {
				switch {
				case err == nil:
					q.n++
				case bus.IsPermanent(err):
					log.Error("email left out", "registration_id", recs[i].RegistrationID, "job_id", recs[i].ID, "err", err)
				default:
					q.errs = append(q.errs, err)
				}
			}
		}
		done <- q
	}()

	var errs []error
	var recipients []string
	recs := make([]emailRecord, 0, fanOutChunk)
	for _, p := range people {
		if p.Status != events.StatusConfirmed {
			continue
		}
		rec, ok, err := build(p)
		switch {
		case err != nil && bus.IsPermanent(err):
			log.Error("email left out", "registration_id", p.RegistrationID, "err", err)
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		case !ok:
			continue
		}
		recs = append(recs, rec)
		recipients = append(recipients, p.RegistrationID)
		if len(recs) == fanOutChunk {
			chunks <- recs
			recs = make([]emailRecord, 0, fanOutChunk)
		}
	}
	if len(recs) > 0 {
		chunks <- recs
	}
	close(chunks)
	q := <-done
	errs = append(errs, q.errs...)
	if err := s.forgetErased(ctx, recipients); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return q.n, fmt.Errorf("%d of the emails: %w", len(errs), errs[0])
	}
	return q.n, nil
}

// forgetErased erases again the registrations among regIDs that were
// erased while their emails were being made. An erasure inserts its
// tombstone before it deletes a registration's emails, so an email claimed
// after that delete is found here, and nothing of the person stays.
func (s *scheduler) forgetErased(ctx context.Context, regIDs []string) error {
	if len(regIDs) == 0 {
		return nil
	}
	erased, err := s.n.people.erasedAmong(ctx, regIDs)
	if err != nil {
		return err
	}
	for _, id := range regIDs {
		if erased[id] {
			if err := s.n.people.erase(ctx, id, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// done returns which of ids coll holds: the work done.
func (s *scheduler) done(ctx context.Context, coll *mongo.Collection, ids []string) (map[string]bool, error) {
	cur, err := coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", coll.Name(), store.Translate(err))
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("%s: %w", coll.Name(), store.Translate(err))
	}
	out := make(map[string]bool, len(docs))
	for _, d := range docs {
		out[d.ID] = true
	}
	return out, nil
}

// leaseRecord holds a piece of work for one replica during a window.
type leaseRecord struct {
	ID     string    `bson:"_id"` // <work>@<window start unix>
	Holder string    `bson:"holder"`
	At     time.Time `bson:"at"`
}

// leaseWindow is how long a replica holds work it took: long enough to
// send a big round, short enough that a replica that died holding it is
// replaced soon.
func (s *scheduler) leaseWindow() time.Duration { return max(10*s.interval, 2*time.Minute) }

// lease takes work for this replica for the window now falls in, by
// inserting its claim (atomic on MongoDB and FerretDB alike). It is true
// when this replica holds the work, now or from an earlier pass.
func (s *scheduler) lease(ctx context.Context, work string, now time.Time) (bool, error) {
	id := fmt.Sprintf("%s@%d", work, now.Truncate(s.leaseWindow()).Unix())
	_, err := s.leases.InsertOne(ctx, leaseRecord{ID: id, Holder: s.holder, At: now.UTC()})
	switch err = store.Translate(err); {
	case err == nil:
		return true, nil
	case !errors.Is(err, store.ErrDuplicate):
		return false, fmt.Errorf("lease %s: %w", work, err)
	}
	var held leaseRecord
	if err := store.Translate(s.leases.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&held)); err != nil {
		return false, fmt.Errorf("lease %s: %w", work, err)
	}
	return held.Holder == s.holder, nil
}
