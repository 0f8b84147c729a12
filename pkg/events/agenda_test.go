package events

import (
	"reflect"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	t0 := time.Date(2027, 11, 9, 9, 0, 0, 0, time.UTC)
	base := func(id string) Session {
		return Session{
			ID: id, Title: "Panel " + id, Abstract: "About " + id, Track: "Main",
			StartsAt: t0, EndsAt: t0.Add(time.Hour), Room: "Neuer Saal", Format: FormatHybrid,
			Speakers: []Speaker{{Name: "Ana", Affiliation: "OSCE"}},
			JoinURL:  "https://meet.example.org/" + id,
			Sequence: 1, ChangedAt: t0,
		}
	}
	with := func(id string, edit func(*Session)) Session {
		s := base(id)
		edit(&s)
		return s
	}
	tests := []struct {
		name string
		prev []Session
		next []Session
		want map[string][]string // session → kinds
	}{
		{"nothing changed", []Session{base("a")}, []Session{base("a")}, nil},
		{"only the sequence and stamp differ", []Session{base("a")},
			[]Session{with("a", func(s *Session) { s.Sequence, s.ChangedAt = 7, t0.Add(time.Hour) })}, nil},
		{"added", nil, []Session{base("a")}, map[string][]string{"a": {ChangeAdded}}},
		{"cancelled: gone from the next release", []Session{base("a"), base("b")}, []Session{base("a")},
			map[string][]string{"b": {ChangeCancelled}}},
		{"cancelled: marked so", []Session{base("a")}, []Session{with("a", func(s *Session) { s.Cancelled = true })},
			map[string][]string{"a": {ChangeCancelled}}},
		{"still cancelled is no change", []Session{with("a", func(s *Session) { s.Cancelled = true })},
			[]Session{with("a", func(s *Session) { s.Cancelled = true })}, nil},
		{"brought back counts as added", []Session{with("a", func(s *Session) { s.Cancelled = true })},
			[]Session{base("a")}, map[string][]string{"a": {ChangeAdded}}},
		{"moved: start", []Session{base("a")}, []Session{with("a", func(s *Session) { s.StartsAt = t0.Add(-time.Hour) })},
			map[string][]string{"a": {ChangeMoved}}},
		{"moved: end", []Session{base("a")}, []Session{with("a", func(s *Session) { s.EndsAt = t0.Add(2 * time.Hour) })},
			map[string][]string{"a": {ChangeMoved}}},
		{"moved: same instant in another zone is no change", []Session{base("a")},
			[]Session{with("a", func(s *Session) { s.StartsAt = s.StartsAt.In(time.FixedZone("x", 3600)) })}, nil},
		{"relocated", []Session{base("a")}, []Session{with("a", func(s *Session) { s.Room = "Ratsaal" })},
			map[string][]string{"a": {ChangeRelocated}}},
		{"renamed", []Session{base("a")}, []Session{with("a", func(s *Session) { s.Title = "New title" })},
			map[string][]string{"a": {ChangeRenamed}}},
		{"speakers: one added", []Session{base("a")},
			[]Session{with("a", func(s *Session) { s.Speakers = append(s.Speakers, Speaker{Name: "Ben"}) })},
			map[string][]string{"a": {ChangeSpeakers}}},
		{"speakers: affiliation", []Session{base("a")},
			[]Session{with("a", func(s *Session) { s.Speakers = []Speaker{{Name: "Ana", Affiliation: "EU"}} })},
			map[string][]string{"a": {ChangeSpeakers}}},
		{"speakers: none left", []Session{base("a")}, []Session{with("a", func(s *Session) { s.Speakers = nil })},
			map[string][]string{"a": {ChangeSpeakers}}},
		{"format", []Session{base("a")}, []Session{with("a", func(s *Session) { s.Format = FormatOnline })},
			map[string][]string{"a": {ChangeFormat}}},
		{"meeting link replaced", []Session{base("a")},
			[]Session{with("a", func(s *Session) { s.JoinURL = "https://meet.example.org/new" })},
			map[string][]string{"a": {ChangeLink}}},
		{"meeting link removed", []Session{base("a")}, []Session{with("a", func(s *Session) { s.JoinURL = "" })},
			map[string][]string{"a": {ChangeLink}}},
		{"abstract", []Session{base("a")}, []Session{with("a", func(s *Session) { s.Abstract = "Other" })},
			map[string][]string{"a": {ChangeDetails}}},
		{"track", []Session{base("a")}, []Session{with("a", func(s *Session) { s.Track = "Side" })},
			map[string][]string{"a": {ChangeDetails}}},
		{"several at once on one session",
			[]Session{base("a")},
			[]Session{with("a", func(s *Session) {
				s.StartsAt, s.EndsAt = t0.Add(time.Hour), t0.Add(2*time.Hour)
				s.Room, s.Title, s.Format, s.JoinURL = "Ratsaal", "Moved panel", FormatInPerson, ""
				s.Speakers = []Speaker{{Name: "Ben"}}
			})},
			map[string][]string{"a": {ChangeMoved, ChangeRelocated, ChangeRenamed, ChangeSpeakers, ChangeFormat, ChangeLink}}},
		{"several sessions at once",
			[]Session{base("a"), base("b"), base("c"), base("d")},
			[]Session{
				with("a", func(s *Session) { s.Room = "Ratsaal" }),
				base("b"),
				with("d", func(s *Session) { s.JoinURL = "https://meet.example.org/d2" }),
				base("e"),
			},
			map[string][]string{"a": {ChangeRelocated}, "d": {ChangeLink}, "e": {ChangeAdded}, "c": {ChangeCancelled}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string][]string{}
			for _, c := range Diff(tc.prev, tc.next) {
				if _, dup := got[c.SessionID]; dup {
					t.Errorf("session %s listed twice", c.SessionID)
				}
				got[c.SessionID] = c.Kinds
				checkSides(t, c, tc.prev, tc.next)
			}
			if tc.want == nil {
				tc.want = map[string][]string{}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Diff = %v, want %v", got, tc.want)
			}
		})
	}
}

// checkSides checks that a change carries the session as it was and as it
// is, so a consumer can tell who is affected without calling back.
func checkSides(t *testing.T, c SessionChange, prev, next []Session) {
	t.Helper()
	find := func(ss []Session) *Session {
		for i := range ss {
			if ss[i].ID == c.SessionID {
				return &ss[i]
			}
		}
		return nil
	}
	p, n := find(prev), find(next)
	switch {
	case c.Has(ChangeAdded):
		if c.Before != nil && !c.Before.Cancelled || c.After == nil || c.After.Title != n.Title {
			t.Errorf("added %s: before %v after %v", c.SessionID, c.Before, c.After)
		}
	case c.Has(ChangeCancelled):
		if c.Before == nil || c.Before.Room != p.Room || c.After == nil || !c.After.Cancelled {
			t.Errorf("cancelled %s: before %v after %v", c.SessionID, c.Before, c.After)
		}
	default:
		if !reflect.DeepEqual(c.Before, p) || !reflect.DeepEqual(c.After, n) {
			t.Errorf("changed %s: before %v after %v, want %v and %v", c.SessionID, c.Before, c.After, p, n)
		}
	}
}

func TestDiffDoesNotAliasItsInput(t *testing.T) {
	prev := []Session{{ID: "a", Title: "A", Speakers: []Speaker{{Name: "Ana"}}}}
	next := []Session{{ID: "a", Title: "B", Speakers: []Speaker{{Name: "Ana"}}}}
	c := Diff(prev, next)
	c[0].Before.Speakers[0].Name = "changed"
	c[0].After.Title = "changed"
	if prev[0].Speakers[0].Name != "Ana" || next[0].Title != "B" {
		t.Fatalf("Diff's result shares memory with its input: %v %v", prev, next)
	}
}

func TestSortSessions(t *testing.T) {
	t0 := time.Date(2027, 11, 9, 9, 0, 0, 0, time.UTC)
	s := []Session{
		{ID: "late", StartsAt: t0.Add(time.Hour), EndsAt: t0.Add(2 * time.Hour)},
		{ID: "long", StartsAt: t0, EndsAt: t0.Add(2 * time.Hour)},
		{ID: "b", Title: "B", StartsAt: t0, EndsAt: t0.Add(time.Hour)},
		{ID: "a", Title: "A", StartsAt: t0, EndsAt: t0.Add(time.Hour)},
	}
	SortSessions(s)
	var ids []string
	for _, x := range s {
		ids = append(ids, x.ID)
	}
	if want := []string{"a", "b", "long", "late"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("order %v, want %v", ids, want)
	}
}
