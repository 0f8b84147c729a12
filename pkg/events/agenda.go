package events

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Session formats: who can attend a session.
const (
	FormatInPerson = "in_person"
	FormatOnline   = "online"
	FormatHybrid   = "hybrid"
)

// Formats lists the session formats in the order forms offer them.
var Formats = []string{FormatInPerson, FormatOnline, FormatHybrid}

// Speaker is a person speaking in a session.
type Speaker struct {
	Name        string `json:"name" bson:"name"`
	Affiliation string `json:"affiliation,omitempty" bson:"affiliation,omitempty"`
}

// Session is one item of an event's agenda, in the draft or in a release.
type Session struct {
	ID       string    `json:"id" bson:"id"`
	Title    string    `json:"title" bson:"title"`
	Abstract string    `json:"abstract,omitempty" bson:"abstract,omitempty"`
	StartsAt time.Time `json:"starts_at" bson:"starts_at"`
	EndsAt   time.Time `json:"ends_at" bson:"ends_at"`
	Room     string    `json:"room,omitempty" bson:"room,omitempty"`
	Track    string    `json:"track,omitempty" bson:"track,omitempty"`
	Format   string    `json:"format" bson:"format"`
	Speakers []Speaker `json:"speakers,omitempty" bson:"speakers,omitempty"`
	// JoinURL is the session's own meeting, when it has one; otherwise the
	// event's meeting is used. Public views leave it out: the way in is the
	// participant's personal join link.
	JoinURL string `json:"join_url,omitempty" bson:"join_url,omitempty"`

	// Set in releases only.

	// Cancelled marks a published session that was taken off the agenda.
	// It stays in every later release so calendars can drop it.
	Cancelled bool `json:"cancelled,omitempty" bson:"cancelled,omitempty"`
	// Sequence is the release in which the session last changed (its
	// iCalendar SEQUENCE); ChangedAt is when that release was published.
	Sequence  int       `json:"sequence,omitempty" bson:"sequence,omitempty"`
	ChangedAt time.Time `json:"changed_at,omitzero" bson:"changed_at,omitempty"`
}

// Kinds of change to a session between two releases.
const (
	ChangeAdded     = "added"
	ChangeCancelled = "cancelled"
	ChangeMoved     = "moved"     // start or end time
	ChangeRelocated = "relocated" // room
	ChangeRenamed   = "renamed"   // title
	ChangeSpeakers  = "speakers_changed"
	ChangeFormat    = "format_changed"
	ChangeLink      = "link_changed" // the session's meeting URL
	ChangeDetails   = "details_changed"
)

// SessionChange is what happened to one session between two releases, with
// the session as it was (nil when added) and as it is (the cancelled session
// when cancelled), so a consumer can tell who is affected without calling
// back.
type SessionChange struct {
	SessionID string   `json:"session_id" bson:"session_id"`
	Kinds     []string `json:"kinds" bson:"kinds"`
	Before    *Session `json:"before,omitempty" bson:"before,omitempty"`
	After     *Session `json:"after,omitempty" bson:"after,omitempty"`
}

// Has reports whether the change includes kind.
func (c SessionChange) Has(kind string) bool { return slices.Contains(c.Kinds, kind) }

// Release is the payload of agenda.v1.release.published: an immutable
// snapshot of an event's agenda and what changed since the release before.
type Release struct {
	EventID  string `json:"event_id" bson:"event_id"`
	Slug     string `json:"slug" bson:"slug"`
	Title    string `json:"title" bson:"title"`
	Timezone string `json:"timezone" bson:"timezone"`
	Version  int    `json:"version" bson:"version"`
	// Previous is the version Changes are measured against (0: none).
	Previous    int       `json:"previous" bson:"previous"`
	Note        string    `json:"note,omitempty" bson:"note,omitempty"`
	PublishedAt time.Time `json:"published_at" bson:"published_at"`
	// PublishedBy names the organiser token that published it.
	PublishedBy string `json:"published_by,omitempty" bson:"published_by,omitempty"`
	// Sessions are in agenda order (start, end, title), cancelled ones
	// included.
	Sessions []Session       `json:"sessions" bson:"sessions"`
	Changes  []SessionChange `json:"diff" bson:"diff"`
}

// Session returns the session with id, or nil.
func (r *Release) Session(id string) *Session {
	for i := range r.Sessions {
		if r.Sessions[i].ID == id {
			return &r.Sessions[i]
		}
	}
	return nil
}

// SortSessions puts sessions in agenda order: by start, end, then title and
// id so the order is total.
func SortSessions(s []Session) {
	slices.SortStableFunc(s, func(a, b Session) int {
		return cmp.Or(a.StartsAt.Compare(b.StartsAt), a.EndsAt.Compare(b.EndsAt),
			strings.Compare(a.Title, b.Title), strings.Compare(a.ID, b.ID))
	})
}

// Diff lists what changed from the sessions of one release (prev) to those
// of a later one (next), per session, in next's agenda order. A session is
// added when next has it live and prev did not (a cancelled session brought
// back counts as added); cancelled when prev had it live and next has it
// cancelled or not at all. Sequence and ChangedAt are ignored.
func Diff(prev, next []Session) []SessionChange {
	before := make(map[string]*Session, len(prev))
	for i := range prev {
		before[prev[i].ID] = &prev[i]
	}
	var out []SessionChange
	seen := make(map[string]bool, len(next))
	live := func(s *Session) bool { return s != nil && !s.Cancelled }
	for i := range next {
		n := &next[i]
		seen[n.ID] = true
		p := before[n.ID]
		switch {
		case !live(p) && live(n):
			out = append(out, SessionChange{SessionID: n.ID, Kinds: []string{ChangeAdded}, After: clone(n)})
		case live(p) && !live(n):
			out = append(out, SessionChange{SessionID: n.ID, Kinds: []string{ChangeCancelled}, Before: clone(p), After: clone(n)})
		case live(p) && live(n):
			if kinds := changes(p, n); len(kinds) > 0 {
				out = append(out, SessionChange{SessionID: n.ID, Kinds: kinds, Before: clone(p), After: clone(n)})
			}
		}
	}
	var gone []SessionChange
	for i := range prev {
		if p := &prev[i]; !seen[p.ID] && live(p) {
			c := *clone(p)
			c.Cancelled = true
			gone = append(gone, SessionChange{SessionID: p.ID, Kinds: []string{ChangeCancelled}, Before: clone(p), After: &c})
		}
	}
	return append(out, gone...)
}

// changes lists the kinds of change between two live versions of a session.
func changes(p, n *Session) []string {
	var kinds []string
	if !p.StartsAt.Equal(n.StartsAt) || !p.EndsAt.Equal(n.EndsAt) {
		kinds = append(kinds, ChangeMoved)
	}
	if p.Room != n.Room {
		kinds = append(kinds, ChangeRelocated)
	}
	if p.Title != n.Title {
		kinds = append(kinds, ChangeRenamed)
	}
	if !slices.Equal(p.Speakers, n.Speakers) {
		kinds = append(kinds, ChangeSpeakers)
	}
	if p.Format != n.Format {
		kinds = append(kinds, ChangeFormat)
	}
	if p.JoinURL != n.JoinURL {
		kinds = append(kinds, ChangeLink)
	}
	if p.Abstract != n.Abstract || p.Track != n.Track {
		kinds = append(kinds, ChangeDetails)
	}
	return kinds
}

func clone(s *Session) *Session {
	c := *s
	c.Speakers = slices.Clone(s.Speakers)
	return &c
}
