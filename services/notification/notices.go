package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/calendar"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// noticesCollection records, per event, the agenda releases announced: one
// document per event and version, inserted once the notice of that version
// is queued (or, for an event's first release, the baseline, without an
// email). The highest is the last release announced.
const noticesCollection = "agenda_notices"

// noticeRecord marks an event's release announced.
type noticeRecord struct {
	ID      string `bson:"_id"` // <event id>:<version>
	EventID string `bson:"event_id"`
	Version int    `bson:"version"`
	// From is the release the changes were measured from; 0 for the
	// baseline, which nobody is told about.
	From int       `bson:"from"`
	Sent int       `bson:"sent"`
	At   time.Time `bson:"at"`
}

// noticeKey is the dedupe key of one person's notice of an event's
// release: one email per person and notice.
func noticeKey(regID, eventID string, version int) string {
	return fmt.Sprintf("agenda:%s:%s:%d", regID, eventID, version)
}

// releaseStamp is what the scheduler needs to know of a release held.
type releaseStamp struct {
	EventID    string    `bson:"event_id"`
	Version    int       `bson:"version"`
	ReceivedAt time.Time `bson:"received_at"`
}

// announce sends the agenda change notices that are due. An event's
// newest release V is announced once it is newer than the last announced,
// A, and no release after A arrived within the debounce: a burst of
// releases makes one notice, of the changes from A to V.
func (s *scheduler) announce(ctx context.Context, now time.Time) error {
	held, err := s.heldReleases(ctx)
	if err != nil {
		return err
	}
	announced, err := s.announced(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for eventID, rels := range held {
		if err := s.announceEvent(ctx, eventID, rels, announced[eventID], now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// heldReleases lists the releases held, by event, in version order.
func (s *scheduler) heldReleases(ctx context.Context) (map[string][]releaseStamp, error) {
	cur, err := s.releases.coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{
		{Key: "event_id", Value: 1}, {Key: "version", Value: 1}, {Key: "received_at", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("releases held: %w", store.Translate(err))
	}
	var stamps []releaseStamp
	if err := cur.All(ctx, &stamps); err != nil {
		return nil, fmt.Errorf("releases held: %w", store.Translate(err))
	}
	out := map[string][]releaseStamp{}
	for _, st := range stamps {
		out[st.EventID] = append(out[st.EventID], st)
	}
	for _, rels := range out {
		slices.SortFunc(rels, func(a, b releaseStamp) int { return a.Version - b.Version })
	}
	return out, nil
}

// announced returns the last release announced per event.
func (s *scheduler) announced(ctx context.Context) (map[string]int, error) {
	cur, err := s.notices.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{
		{Key: "event_id", Value: 1}, {Key: "version", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("agenda notices: %w", store.Translate(err))
	}
	var recs []noticeRecord
	if err := cur.All(ctx, &recs); err != nil {
		return nil, fmt.Errorf("agenda notices: %w", store.Translate(err))
	}
	out := map[string]int{}
	for _, r := range recs {
		out[r.EventID] = max(out[r.EventID], r.Version)
	}
	return out, nil
}

// markAnnounced records a release announced; a repeat changes nothing.
func (s *scheduler) markAnnounced(ctx context.Context, rec noticeRecord) error {
	_, err := s.notices.InsertOne(ctx, rec)
	if err = store.Translate(err); err != nil && !errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("record agenda notice[%s]: %w", rec.ID, err)
	}
	return nil
}

// announceEvent announces the event's newest release if it is due. The
// first release an event has is the baseline: recorded as announced at
// once, without an email (the agenda's first publication is not a change).
func (s *scheduler) announceEvent(ctx context.Context, eventID string, held []releaseStamp, last int, now time.Time) error {
	if len(held) == 0 {
		return nil
	}
	if last == 0 {
		base := held[0].Version
		rec := noticeRecord{ID: releaseID(eventID, base), EventID: eventID, Version: base, At: now.UTC()}
		if err := s.markAnnounced(ctx, rec); err != nil {
			return err
		}
		s.log.Info("agenda baseline recorded", "event_id", eventID, "version", base)
		last = base
	}
	newest := held[len(held)-1]
	if newest.Version <= last {
		return nil
	}
	var settled time.Time // the last release since the last notice restarts the wait
	for _, h := range held {
		if h.Version > last && h.ReceivedAt.After(settled) {
			settled = h.ReceivedAt
		}
	}
	if now.Sub(settled) < s.debounce {
		return nil
	}
	v := newest.Version
	if ok, err := s.lease(ctx, "agenda:"+releaseID(eventID, v), now); err != nil || !ok {
		return err // another replica is on it
	}
	log := s.log.With("event_id", eventID, "version", v, "from", last)
	sent, err := s.sendNotice(ctx, log, eventID, last, v, now)
	if err != nil {
		return fmt.Errorf("agenda notice event[%s] release[%d]: %w", eventID, v, err)
	}
	if err := s.markAnnounced(ctx, noticeRecord{ID: releaseID(eventID, v), EventID: eventID, Version: v, From: last, Sent: sent, At: now.UTC()}); err != nil {
		return err
	}
	log.Info("agenda notice sent", "emails", sent)
	return nil
}

// sendNotice emails each confirmed participant the changes from release
// from to release v that affect them, with an .ics of those sessions.
// Nobody is told of changes to an event that is over.
func (s *scheduler) sendNotice(ctx context.Context, log *slog.Logger, eventID string, from, v int, now time.Time) (int, error) {
	before, err := s.releases.release(ctx, eventID, from)
	if err != nil {
		return 0, err
	}
	after, err := s.releases.release(ctx, eventID, v)
	if err != nil {
		return 0, err
	}
	changes := events.Diff(before.Sessions, after.Sessions)
	if len(changes) == 0 {
		return 0, nil
	}
	ev, err := s.n.eventOf(ctx, eventID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	if !ev.EndsAt.IsZero() && now.After(ev.EndsAt) {
		log.Info("event is over: agenda changes recorded without emails")
		return 0, nil
	}
	people, err := s.n.people.current(ctx, eventID)
	if err != nil {
		return 0, err
	}
	slug := after.Slug
	if slug == "" {
		slug = ev.Slug
	}
	agendaURL := s.agendaURL(slug)
	feeds := map[string][]byte{} // by the sessions they hold: few audiences, many people
	return s.fanOut(ctx, log, people, func(p participant) (emailRecord, bool, error) {
		lines := noticeLines(changes, p)
		if len(lines) == 0 {
			return emailRecord{}, false, nil
		}
		l := baseLetter(kindAgenda, ev, p, agendaURL)
		l.Sessions = lines
		var atts []attachment
		if ics, err := s.noticeFeed(feeds, &after.Release, changes, lines, agendaURL); err != nil {
			log.Error("agenda notice without its .ics", "err", err)
		} else {
			atts = []attachment{{Name: "agenda.ics", ContentType: calendar.ContentType, Data: ics}}
		}
		return s.record(l, p, noticeKey(p.RegistrationID, eventID, v), atts)
	})
}

// concerns lists the kinds of a change that matter to someone attending
// in mode. A room matters to those in the room, a meeting link to those
// online; a time, a cancellation, a new session, a title, the speakers,
// the format and the details to everyone who can attend the session —
// as it is now, or as it was for a cancellation or a change of format.
func concerns(c events.SessionChange, mode string) []string {
	online := mode == events.ModeOnline
	was := c.Before != nil && attends(mode, c.Before.Format)
	is := c.After != nil && !c.After.Cancelled && attends(mode, c.After.Format)
	var out []string
	for _, k := range c.Kinds {
		var ok bool
		switch k {
		case events.ChangeRelocated:
			ok = !online && is
		case events.ChangeLink:
			ok = online && is
		case events.ChangeCancelled:
			ok = was
		case events.ChangeFormat:
			ok = was || is
		default: // added, moved, renamed, speakers, details
			ok = is
		}
		if ok {
			out = append(out, k)
		}
	}
	return out
}

// noticeLines are the sessions of a notice to p: the changes that concern
// them, each with only the kinds that do.
func noticeLines(changes []events.SessionChange, p participant) []sessionLine {
	var lines []sessionLine
	for _, c := range changes {
		kinds := concerns(c, p.Mode)
		if len(kinds) == 0 {
			continue
		}
		now := c.After
		if now == nil {
			now = c.Before
		}
		line := sessionLine{
			ID: c.SessionID, Title: now.Title, Start: now.StartsAt, End: now.EndsAt, Room: now.Room,
			Format: now.Format, Cancelled: now.Cancelled || c.Has(events.ChangeCancelled),
			Kinds: kinds, Before: withoutMeeting(c.Before),
		}
		if p.Mode == events.ModeOnline && p.Status == events.StatusConfirmed && !line.Cancelled &&
			attends(p.Mode, now.Format) {
			line.JoinURL = sessionJoinURL(p.JoinURL, c.SessionID)
		}
		lines = append(lines, line)
	}
	return lines
}

// withoutMeeting copies a session without its meeting URL: the way in is
// the participant's personal link, never the meeting itself.
func withoutMeeting(s *events.Session) *events.Session {
	if s == nil {
		return nil
	}
	c := *s
	c.Speakers = slices.Clone(s.Speakers)
	c.JoinURL = ""
	return &c
}

// noticeFeed is the .ics of a notice's sessions, from release rel: the same
// UIDs as the public feed, each session's SEQUENCE from the release in
// which it last changed, cancelled sessions as STATUS:CANCELLED, and no
// meeting URLs. Feeds are cached by the sessions they hold.
func (s *scheduler) noticeFeed(cache map[string][]byte, rel *events.Release, changes []events.SessionChange,
	lines []sessionLine, agendaURL string) ([]byte, error) {
	ids := make([]string, len(lines))
	for i, l := range lines {
		ids[i] = l.ID
	}
	key := strings.Join(ids, "\n")
	if b, ok := cache[key]; ok {
		return b, nil
	}
	sel := calendar.Select(rel, ids...)
	// A session deleted outright, not kept cancelled, is sent cancelled
	// with this release's sequence so that calendars drop it.
	for _, c := range changes {
		if c.After != nil && c.Has(events.ChangeCancelled) && slices.Contains(ids, c.SessionID) && rel.Session(c.SessionID) == nil {
			gone := *withoutMeeting(c.After)
			gone.Cancelled, gone.Sequence, gone.ChangedAt = true, rel.Version, rel.PublishedAt
			sel.Sessions = append(sel.Sessions, gone)
		}
	}
	events.SortSessions(sel.Sessions)
	b, err := calendar.Feed(sel, calendar.Options{Domain: s.public.Hostname(), PageURL: agendaURL})
	if err != nil {
		return nil, err
	}
	cache[key] = b
	return b, nil
}
