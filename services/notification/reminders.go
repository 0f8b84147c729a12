package notification

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
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

// round is one reminder of an event: offset before the start it was
// scheduled for.
type round struct {
	ID     string // <event>:<offset>:<start unix>
	Offset time.Duration
	Due    time.Time
}

// roundRecord marks a round done.
type roundRecord struct {
	ID       string    `bson:"_id"`
	EventID  string    `bson:"event_id"`
	Offset   string    `bson:"offset"`
	StartsAt time.Time `bson:"starts_at"`
	Sent     int       `bson:"sent"`
	// Superseded is set on a round that was due together with a later one
	// (after a downtime) and was left out: one reminder is enough.
	Superseded bool      `bson:"superseded,omitempty"`
	At         time.Time `bson:"at"`
}

// formatOffset writes an offset the same way however the organiser
// spelled it ("1h", "60m", "1h0m0s" are all "1h"), for dedupe keys.
func formatOffset(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// roundID names a round; a changed start time makes new rounds.
func roundID(eventID string, offset time.Duration, start time.Time) string {
	return fmt.Sprintf("%s:%s:%d", eventID, formatOffset(offset), start.Unix())
}

// reminderKey is the dedupe key of one reminder email.
func reminderKey(regID string, offset time.Duration, start time.Time) string {
	return fmt.Sprintf("reminder:%s:%s:%d", regID, formatOffset(offset), start.Unix())
}

// dueRounds are the event's rounds whose time has come and whose event has
// not started: due ≤ now < start. Offsets that do not parse are skipped
// (the registration service validates them).
func dueRounds(ev events.Event, now time.Time) []round {
	if ev.StartsAt.IsZero() || !now.Before(ev.StartsAt) {
		return nil
	}
	var out []round
	for _, raw := range ev.Reminders {
		d, err := time.ParseDuration(strings.TrimSpace(raw))
		if err != nil || d <= 0 {
			continue
		}
		d = d.Truncate(time.Second)
		due := ev.StartsAt.Add(-d)
		if now.Before(due) || slices.ContainsFunc(out, func(r round) bool { return r.Offset == d }) {
			continue
		}
		out = append(out, round{ID: roundID(ev.ID, d, ev.StartsAt), Offset: d, Due: due})
	}
	return out
}

// remind sends every round that is due and not done.
func (s *scheduler) remind(ctx context.Context, now time.Time) error {
	evs, err := s.events.all(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ev := range evs {
		rounds := dueRounds(ev, now)
		if len(rounds) == 0 {
			continue
		}
		if err := s.remindEvent(ctx, ev, rounds, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// remindEvent sends the latest of the event's due rounds not done yet and
// records the earlier ones as superseded: after a downtime that spans both
// the 24h and the 1h reminder, only the 1h one goes out.
func (s *scheduler) remindEvent(ctx context.Context, ev events.Event, rounds []round, now time.Time) error {
	ids := make([]string, len(rounds))
	for i, r := range rounds {
		ids[i] = r.ID
	}
	done, err := s.done(ctx, s.rounds, ids)
	if err != nil {
		return err
	}
	rounds = slices.DeleteFunc(rounds, func(r round) bool { return done[r.ID] })
	if len(rounds) == 0 {
		return nil
	}
	slices.SortFunc(rounds, func(a, b round) int { return cmp.Compare(a.Offset, b.Offset) })
	r := rounds[0] // the smallest offset: the latest due
	log := s.log.With("event_id", ev.ID, "round", r.ID)
	if ok, err := s.lease(ctx, "reminder:"+r.ID, now); err != nil || !ok {
		return err // another replica is on it
	}
	sent, err := s.sendRound(ctx, log, ev, r, now)
	if err != nil {
		return fmt.Errorf("reminder round[%s]: %w", r.ID, err)
	}
	recs := []any{roundRecord{ID: r.ID, EventID: ev.ID, Offset: formatOffset(r.Offset), StartsAt: ev.StartsAt.UTC(), Sent: sent, At: now.UTC()}}
	for _, old := range rounds[1:] {
		recs = append(recs, roundRecord{ID: old.ID, EventID: ev.ID, Offset: formatOffset(old.Offset),
			StartsAt: ev.StartsAt.UTC(), Superseded: true, At: now.UTC()})
	}
	if _, err := s.rounds.InsertMany(ctx, recs, options.InsertMany().SetOrdered(false)); err != nil && !onlyDuplicates(err) {
		return fmt.Errorf("record reminder round[%s]: %w", r.ID, store.Translate(err))
	}
	log.Info("reminder round sent", "emails", sent, "superseded", len(rounds)-1)
	return nil
}

// sendRound sends the round's reminder to every confirmed registration of
// the event, in person and online.
func (s *scheduler) sendRound(ctx context.Context, log *slog.Logger, ev events.Event, r round, now time.Time) (int, error) {
	people, err := s.n.people.current(ctx, ev.ID)
	if err != nil {
		return 0, err
	}
	var rel *events.Release
	switch latest, err := s.releases.latestRelease(ctx, ev.ID); {
	case err == nil:
		rel = &latest.Release
	case !errors.Is(err, store.ErrNotFound):
		return 0, err
	}
	// Sent late (after a downtime), a reminder says how long is really
	// left; on time, the offset it was scheduled for.
	lead := r.Offset
	if now.Sub(r.Due) > max(2*s.interval, 5*time.Minute) {
		lead = min(r.Offset, max(ev.StartsAt.Sub(now).Round(time.Minute), time.Minute))
	}
	agendaURL := s.agendaURL(ev.Slug)
	return s.fanOut(ctx, log, people, func(p participant) (emailRecord, bool, error) {
		l := reminderLetter(ev, p, rel, lead, agendaURL, now)
		return s.record(l, p, reminderKey(p.RegistrationID, r.Offset, ev.StartsAt), nil)
	})
}

// reminderLetter is a reminder to one participant. Online attendees get
// their join link and each session they can join with its own personal
// link; in-person attendees the venue and the day's agenda: the sessions
// in the room on the event's first day, or on the day of the reminder if
// that is later.
func reminderLetter(ev events.Event, p participant, rel *events.Release, lead time.Duration, agendaURL string, now time.Time) letter {
	l := baseLetter(kindReminder, ev, p, agendaURL)
	l.Offset = lead
	if rel == nil {
		return l
	}
	loc, err := i18n.LoadZone(ev.Timezone)
	if err != nil {
		loc = time.UTC
	}
	day := ev.StartsAt
	if now.After(day) {
		day = now
	}
	y, m, d := day.In(loc).Date()
	for _, sess := range rel.Sessions {
		if sess.Cancelled || !attends(p.Mode, sess.Format) {
			continue
		}
		line := sessionLine{ID: sess.ID, Title: sess.Title, Start: sess.StartsAt, End: sess.EndsAt, Room: sess.Room, Format: sess.Format}
		if l.online() {
			line.JoinURL = sessionJoinURL(l.JoinURL, sess.ID)
		} else if sy, sm, sd := sess.StartsAt.In(loc).Date(); sy != y || sm != m || sd != d {
			continue
		}
		l.Sessions = append(l.Sessions, line)
	}
	return l
}

// baseLetter is what every scheduled email to a participant says about
// them and the event.
func baseLetter(kind string, ev events.Event, p participant, agendaURL string) letter {
	l := letter{
		Kind: kind, Locale: p.Locale,
		To: strings.TrimSpace(p.Email), Name: p.Name,
		Title: ev.Title, EventStart: ev.StartsAt, EventEnd: ev.EndsAt, EventZone: ev.Timezone,
		VenueName: ev.Venue.Name, VenueAddress: ev.Venue.Address,
		EventURL: ev.PublicURL, AgendaURL: agendaURL,
		Mode: p.Mode, LocalZone: p.Timezone, Status: p.Status, ManageURL: p.ManageURL,
	}
	if l.Locale == "" && len(ev.Locales) > 0 {
		l.Locale = ev.Locales[0]
	}
	if p.Mode == events.ModeOnline && p.Status == events.StatusConfirmed {
		l.JoinURL = p.JoinURL
	}
	return l
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
// queued (or claimed before). An email that can never be sent (no usable
// address, a template that fails) is logged and left out; any other error
// is returned once every chunk was tried, so the work is tried again and
// the claims keep what was queued from going out twice.
func (s *scheduler) fanOut(ctx context.Context, log *slog.Logger, people []participant,
	build func(p participant) (emailRecord, bool, error)) (int, error) {
	var queued int
	var errs []error
	var recipients []string
	var recs []emailRecord
	flush := func() {
		for i, err := range s.n.queue(ctx, recs) {
			switch {
			case err == nil:
				queued++
			case bus.IsPermanent(err):
				log.Error("email left out", "registration_id", recs[i].RegistrationID, "job_id", recs[i].ID, "err", err)
			default:
				errs = append(errs, err)
			}
		}
		recs = recs[:0]
	}
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
			flush()
		}
	}
	if len(recs) > 0 {
		flush()
	}
	if err := s.forgetErased(ctx, recipients); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return queued, fmt.Errorf("%d of the emails: %w", len(errs), errs[0])
	}
	return queued, nil
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
