package notification

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/store"
)

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
	if err := store.InsertNew(ctx, s.rounds, recs); err != nil {
		return fmt.Errorf("record reminder round[%s]: %w", r.ID, err)
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
	loc := i18n.ZoneOrUTC(ev.Timezone)
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
