package agenda

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

const (
	source      = "plenary/agenda"
	kindRelease = "release"
	// attempts bounds how often an edit or a publish starts over after
	// losing a race for the next version.
	attempts = 20
)

// backoff waits a little, at random, after a lost race, so that writers
// that collided do not collide again at once.
func backoff(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(rand.IntN(20)+1) * time.Millisecond):
	}
}

var (
	errUnchanged    = errors.New("agenda: the patch changes nothing")
	errNoChanges    = web.Conflict("no_changes", "the draft is the same as the latest release: there is nothing to publish")
	errBusy         = web.Problem(503, "busy", "others are editing this agenda right now; try again in a moment")
	errVersionTaken = errors.New("agenda: release version taken by another publish")
)

// nextRelease builds release prev.Version+1 from the draft: the draft's
// sessions, plus every session of prev that is no longer in the draft, now
// cancelled (a cancelled session stays in every later release so calendars
// can drop it). A session's Sequence becomes the new version only if it
// changed; the others keep theirs.
func nextRelease(ev *events.Event, prev *events.Release, sessions []events.Session, note, by string, at time.Time) *events.Release {
	rel := &events.Release{
		EventID: ev.ID, Slug: ev.Slug, Title: ev.Title, Timezone: ev.Timezone,
		Version: 1, Note: note, PublishedAt: at.UTC().Truncate(time.Millisecond), PublishedBy: by,
	}
	var before []events.Session
	if prev != nil {
		rel.Version, rel.Previous, before = prev.Version+1, prev.Version, prev.Sessions
	}
	next := slices.Clone(sessions)
	for _, p := range before {
		if !slices.ContainsFunc(next, func(s events.Session) bool { return s.ID == p.ID }) {
			p.Cancelled = true
			next = append(next, p)
		}
	}
	changed := map[string]bool{}
	for _, c := range events.Diff(before, next) {
		changed[c.SessionID] = true
	}
	old := map[string]events.Session{}
	for _, p := range before {
		old[p.ID] = p
	}
	for i := range next {
		if p, ok := old[next[i].ID]; ok && !changed[next[i].ID] {
			next[i].Sequence, next[i].ChangedAt = p.Sequence, p.ChangedAt
		} else {
			next[i].Sequence, next[i].ChangedAt = rel.Version, rel.PublishedAt
		}
	}
	events.SortSessions(next)
	rel.Sessions = next
	// Diffed again after stamping, so the changes carry the sessions as
	// they are published (with their new Sequence).
	rel.Changes = events.Diff(before, next)
	return rel
}

// publish snapshots the event's draft as its next release. Two publishes at
// once both build version N; the insert of N is the fence, and the loser
// builds N+1 against N from the draft as it is then.
func (a *agenda) publish(ctx context.Context, ev *events.Event, note, by string) (*events.Release, error) {
	for range attempts {
		prev, err := a.releases.latest(ctx, ev.ID, true)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		d, err := a.drafts.latest(ctx, ev.ID)
		if err != nil {
			return nil, err
		}
		rel := nextRelease(ev, prev, d.Sessions, note, by, time.Now())
		if len(rel.Changes) == 0 {
			return nil, errNoChanges
		}
		err = a.store(ctx, rel)
		if errors.Is(err, errVersionTaken) {
			a.races.Inc()
			backoff(ctx)
			continue
		}
		return rel, err
	}
	return nil, errBusy
}

// store writes rel through the outbox: the release is inserted and
// agenda.v1.release.published goes out with it, or neither (the relay
// finishes what a crash interrupts).
func (a *agenda) store(ctx context.Context, rel *events.Release) error {
	env, err := events.New(source, events.AgendaReleasePublished, rel.EventID, announced(rel))
	if err != nil {
		return err
	}
	env = env.Traced(ctx)
	doc := releaseDoc{ID: versionID(rel.EventID, rel.Version), N: rel.Version, PublishID: env.ID, Release: *rel}
	entry, err := store.NewEntry(kindRelease, env, doc)
	if err != nil {
		return err
	}
	if len(entry.Message) > maxEventBytes || len(entry.State) > maxReleaseBytes {
		return errTooLarge
	}
	return a.outbox.Write(ctx, entry)
}

// A release must fit in one NATS message (1 MiB by default) as announced,
// and in one MongoDB document (16 MiB) as stored, with room to spare.
const (
	maxEventBytes   = 900 << 10
	maxReleaseBytes = 12 << 20
)

var errTooLarge = web.Problem(http.StatusUnprocessableEntity, "agenda_too_large",
	"this release is too large to announce (at most about 900 KB without abstracts): shorten speaker lists or sessions, or remove cancelled sessions' details")

// announced is the release as agenda.v1.release.published carries it:
// without abstracts, which no consumer needs to tell who is affected and
// which would make a large agenda too big for one message (the public
// views have them).
func announced(rel *events.Release) *events.Release {
	return withSessions(rel, func(s *events.Session) { s.Abstract = "" })
}

// withSessions is a copy of rel with edit applied to a copy of every
// session in it, those of the diff included.
func withSessions(rel *events.Release, edit func(*events.Session)) *events.Release {
	out := *rel
	out.Sessions = make([]events.Session, len(rel.Sessions))
	for i, s := range rel.Sessions {
		edit(&s)
		out.Sessions[i] = s
	}
	copyOf := func(s *events.Session) *events.Session {
		if s == nil {
			return nil
		}
		c := *s
		edit(&c)
		return &c
	}
	out.Changes = make([]events.SessionChange, len(rel.Changes))
	for i, c := range rel.Changes {
		c.Before, c.After = copyOf(c.Before), copyOf(c.After)
		out.Changes[i] = c
	}
	return &out
}

// applyRelease inserts a release. A duplicate is fine if it is this
// entry's own (a replay); another publish's release under the same version
// means this one lost the race: discarded, never announced.
func (a *agenda) applyRelease(ctx context.Context, e *store.Entry) error {
	var doc releaseDoc
	if err := bson.Unmarshal(e.State, &doc); err != nil {
		return store.Discard(fmt.Errorf("outbox %s: state: %w", e.ID, err))
	}
	_, err := a.releases.coll.InsertOne(ctx, &doc)
	if err = store.Translate(err); errors.Is(err, store.ErrDuplicate) {
		var held releaseDoc
		if err := a.releases.get(ctx, doc.EventID, doc.N, &held); err != nil {
			return err
		}
		if held.PublishID != e.ID {
			return store.Discard(errVersionTaken)
		}
	} else if err != nil {
		return err
	}
	// Readers see the release once the head says so: before it is
	// announced, and before the organiser is answered.
	return a.releases.raise(ctx, doc.EventID, doc.N)
}

// public is a release as anyone may see it: no meeting URLs (the way in is
// the participant's personal join link) and no organiser names.
func public(rel *events.Release) *events.Release {
	out := withSessions(rel, func(s *events.Session) { s.JoinURL = "" })
	out.PublishedBy = ""
	return out
}
