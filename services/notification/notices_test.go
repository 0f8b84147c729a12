package notification

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/calendar"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// firstAgenda is release 1 of an event's agenda on the day of ev's start:
// a hybrid opening, an in-person panel, an online workshop, a hybrid
// session that will be cancelled and a hybrid one that stays as it is.
func firstAgenda(ev events.Event) events.Release {
	day := ev.StartsAt
	at := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
	published := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	s := []events.Session{
		{ID: "s-open", Title: "Opening panel", StartsAt: at(0), EndsAt: at(1), Room: "Festsaal",
			Format: events.FormatHybrid, JoinURL: "https://meet.plenary.test/open-1"},
		{ID: "s-data", Title: "Data sovereignty", StartsAt: at(1), EndsAt: at(2), Room: "Salon",
			Format: events.FormatInPerson},
		{ID: "s-web", Title: "Remote workshop", StartsAt: at(2), EndsAt: at(3),
			Format: events.FormatOnline, JoinURL: "https://meet.plenary.test/web-1"},
		{ID: "s-gone", Title: "Panel to be cancelled", StartsAt: at(3), EndsAt: at(4), Room: "Kleiner Saal",
			Format: events.FormatHybrid, JoinURL: "https://meet.plenary.test/gone-1"},
		{ID: "s-later", Title: "Closing", StartsAt: at(5), EndsAt: at(6), Room: "Festsaal",
			Format: events.FormatHybrid, JoinURL: "https://meet.plenary.test/later-1"},
	}
	for i := range s {
		s[i].Sequence, s[i].ChangedAt = 1, published
	}
	return events.Release{
		EventID: ev.ID, Slug: ev.Slug, Title: ev.Title, Timezone: ev.Timezone, Version: 1,
		PublishedAt: published, Sessions: s, Changes: events.Diff(nil, s),
	}
}

// nextRelease is the release after prev, with the sessions as change
// leaves them; the sessions that changed get the new sequence, as the
// agenda service gives them.
func nextRelease(prev events.Release, change func(s []events.Session) []events.Session) events.Release {
	next := prev
	next.Version, next.Previous = prev.Version+1, prev.Version
	next.PublishedAt = prev.PublishedAt.Add(time.Minute)
	next.Sessions = change(slices.Clone(prev.Sessions))
	next.Changes = events.Diff(prev.Sessions, next.Sessions)
	for _, c := range next.Changes {
		if s := next.Session(c.SessionID); s != nil {
			s.Sequence, s.ChangedAt = next.Version, next.PublishedAt
		}
	}
	events.SortSessions(next.Sessions)
	return next
}

// sessionOf returns the session with id in s, to change it.
func sessionOf(s []events.Session, id string) *events.Session {
	for i := range s {
		if s[i].ID == id {
			return &s[i]
		}
	}
	panic("no session " + id)
}

// waitNotice waits until the service has recorded the event's release
// version as announced.
func (c *cluster) waitNotice(eventID string, version int) noticeRecord {
	c.t.Helper()
	var rec noticeRecord
	testkit.Eventually(c.t, 15*time.Second, func() error {
		err := c.db().Collection(noticesCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: releaseID(eventID, version)}}).Decode(&rec)
		return store.Translate(err)
	})
	return rec
}

// feedEntry is a VEVENT of an .ics: its SEQUENCE and STATUS.
type feedEntry struct {
	Sequence int
	Status   string
}

// parseFeed parses an .ics and returns its VEVENTs by UID.
func parseFeed(t *testing.T, data []byte) map[string]feedEntry {
	t.Helper()
	cal, err := ics.ParseCalendar(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the .ics does not parse: %v\n%s", err, data)
	}
	out := map[string]feedEntry{}
	for _, ev := range cal.Events() {
		var e feedEntry
		if p := ev.GetProperty(ics.ComponentPropertySequence); p != nil {
			e.Sequence, _ = strconv.Atoi(p.Value)
		}
		if p := ev.GetProperty(ics.ComponentPropertyStatus); p != nil {
			e.Status = p.Value
		}
		out[ev.Id()] = e
	}
	return out
}

// noticeFeedOf returns the parsed .ics attached to an agenda notice.
func noticeFeedOf(t *testing.T, j events.MailJob) map[string]feedEntry {
	t.Helper()
	for _, a := range j.Attachments {
		if a.Name == "agenda.ics" {
			if !strings.HasPrefix(a.ContentType, "text/calendar") {
				t.Errorf("agenda.ics sent as %s", a.ContentType)
			}
			if bytes.Contains(a.Data, []byte("meet.plenary.test")) {
				t.Errorf("the .ics to %s carries a meeting URL:\n%s", j.RegistrationID, a.Data)
			}
			return parseFeed(t, a.Data)
		}
	}
	t.Fatalf("notice to %s without agenda.ics", j.RegistrationID)
	return nil
}

func TestAgendaNoticeDebouncedAndTargeted(t *testing.T) {
	c := startCluster(t, 1, 2*time.Second)
	ev := conference("evt-agenda", tomorrowMorning())
	ip, on := attendee(ev, "agenda-ip", events.ModeInPerson), attendee(ev, "agenda-on", events.ModeOnline)
	gone := attendee(ev, "agenda-cancelled", events.ModeInPerson)
	c.register(ip, on, gone)
	gone.Version, gone.Status = 2, events.StatusCancelled
	c.publish(events.RegistrationCancelled, gone)
	c.publishEvent(events.EventCreated, ev)

	v1 := firstAgenda(ev)
	c.publishRelease(v1)
	if base := c.waitNotice(ev.ID, 1); base.From != 0 || base.Sent != 0 {
		t.Errorf("baseline %+v, want one recorded without emails", base)
	}
	// Three releases within the debounce window.
	v2 := nextRelease(v1, func(s []events.Session) []events.Session {
		sessionOf(s, "s-web").JoinURL = "https://meet.plenary.test/web-2" // online only
		return s
	})
	v3 := nextRelease(v2, func(s []events.Session) []events.Session {
		sessionOf(s, "s-data").Room = "Bibliothek" // in person only
		return s
	})
	v4 := nextRelease(v3, func(s []events.Session) []events.Session {
		sessionOf(s, "s-gone").Cancelled = true                             // hybrid: everyone
		sessionOf(s, "s-open").JoinURL = "https://meet.plenary.test/open-2" // hybrid, but a link: online
		return s
	})
	for _, rel := range []events.Release{v2, v3, v4} {
		c.publishRelease(rel)
	}
	notice := c.waitNotice(ev.ID, 4)
	jobs := c.waitKind(kindAgenda, 2)
	if notice.From != 1 || notice.Sent != 2 {
		t.Errorf("notice %+v, want from release 1, 2 emails", notice)
	}
	for _, v := range []int{2, 3} {
		n, err := c.db().Collection(noticesCollection).CountDocuments(context.Background(), bson.D{{Key: "_id", Value: releaseID(ev.ID, v)}})
		if err != nil || n != 0 {
			t.Errorf("release %d announced on its own (%d, %v)", v, n, err)
		}
	}

	// The public feed of release 1: the notices must update its entries.
	pub, err := calendar.Feed(&v1, calendar.Options{Domain: "plenary.test"})
	if err != nil {
		t.Fatal(err)
	}
	before := parseFeed(t, pub)
	want := map[string]map[string]feedEntry{
		ip.ID: {"s-data@plenary.test": {3, "CONFIRMED"}, "s-gone@plenary.test": {4, "CANCELLED"}},
		on.ID: {"s-web@plenary.test": {2, "CONFIRMED"}, "s-gone@plenary.test": {4, "CANCELLED"}, "s-open@plenary.test": {4, "CONFIRMED"}},
	}
	if got := recipients(jobs); !slices.Equal(got, []string{ip.ID, on.ID}) {
		t.Fatalf("agenda notices to %v, want %v", got, []string{ip.ID, on.ID})
	}
	for _, j := range jobs {
		if wantID := jobID(noticeKey(j.RegistrationID, ev.ID, 4)); j.ID != wantID {
			t.Errorf("notice job %s, want %s", j.ID, wantID)
		}
		got := noticeFeedOf(t, j)
		if !maps.Equal(got, want[j.RegistrationID]) {
			t.Errorf(".ics to %s: %v, want %v", j.RegistrationID, got, want[j.RegistrationID])
		}
		for uid, e := range got {
			if b, ok := before[uid]; !ok || e.Sequence <= b.Sequence {
				t.Errorf(".ics to %s: %s SEQUENCE %d; the public feed had it at %d (%v)", j.RegistrationID, uid, e.Sequence, b.Sequence, ok)
			}
		}
		if strings.Contains(j.Text+j.HTML, "meet.plenary.test") {
			t.Errorf("notice to %s shows a meeting URL", j.RegistrationID)
		}
		switch j.RegistrationID {
		case ip.ID:
			if !strings.Contains(j.Text, "Bibliothek") || strings.Contains(j.Text, "Remote workshop") {
				t.Errorf("in-person notice should name the new room and not the online workshop:\n%s", j.Text)
			}
		case on.ID:
			if strings.Contains(j.Text, "Bibliothek") || !strings.Contains(j.Text, sessionJoinURL(on.JoinURL, "s-web")) {
				t.Errorf("online notice should not name the new room, and should give the workshop's personal link:\n%s", j.Text)
			}
		}
	}
}

func TestAgendaNoticeAudience(t *testing.T) {
	cases := []struct {
		name   string
		change func(s []events.Session) []events.Session
		// want lists, per audience ("ip", "on"), the sessions in their
		// notice; an audience left out gets none.
		want map[string][]string
	}{
		{"meeting link of a hybrid session", func(s []events.Session) []events.Session {
			sessionOf(s, "s-open").JoinURL = "https://meet.plenary.test/open-2"
			return s
		}, map[string][]string{"on": {"s-open"}}},
		{"room of a hybrid session", func(s []events.Session) []events.Session {
			sessionOf(s, "s-open").Room = "Bibliothek"
			return s
		}, map[string][]string{"ip": {"s-open"}}},
		{"time of a hybrid session", func(s []events.Session) []events.Session {
			o := sessionOf(s, "s-open")
			o.StartsAt, o.EndsAt = o.StartsAt.Add(30*time.Minute), o.EndsAt.Add(30*time.Minute)
			return s
		}, map[string][]string{"ip": {"s-open"}, "on": {"s-open"}}},
		{"time of an online session", func(s []events.Session) []events.Session {
			o := sessionOf(s, "s-web")
			o.StartsAt, o.EndsAt = o.StartsAt.Add(time.Hour), o.EndsAt.Add(time.Hour)
			return s
		}, map[string][]string{"on": {"s-web"}}},
		{"an in-person session cancelled", func(s []events.Session) []events.Session {
			sessionOf(s, "s-data").Cancelled = true
			return s
		}, map[string][]string{"ip": {"s-data"}}},
		{"a new hybrid session", func(s []events.Session) []events.Session {
			o := *sessionOf(s, "s-later")
			o.ID, o.Title, o.StartsAt, o.EndsAt = "s-new", "Late addition", o.StartsAt.Add(time.Hour), o.EndsAt.Add(time.Hour)
			return append(s, o)
		}, map[string][]string{"ip": {"s-new"}, "on": {"s-new"}}},
		{"speakers of an in-person session", func(s []events.Session) []events.Session {
			sessionOf(s, "s-data").Speakers = []events.Speaker{{Name: "Grace Hopper"}}
			return s
		}, map[string][]string{"ip": {"s-data"}}},
		{"a meeting link nobody uses", func(s []events.Session) []events.Session {
			sessionOf(s, "s-data").JoinURL = "https://meet.plenary.test/data"
			return s
		}, map[string][]string{}},
		{"a hybrid session goes online only", func(s []events.Session) []events.Session {
			sessionOf(s, "s-open").Format = events.FormatOnline
			return s
		}, map[string][]string{"ip": {"s-open"}, "on": {"s-open"}}},
		{"a session deleted outright", func(s []events.Session) []events.Session {
			return slices.DeleteFunc(s, func(x events.Session) bool { return x.ID == "s-gone" })
		}, map[string][]string{"ip": {"s-gone"}, "on": {"s-gone"}}},
	}
	c := startCluster(t, 1, 300*time.Millisecond)
	type setup struct {
		ev     events.Event
		v1, v2 events.Release
	}
	setups := make([]setup, len(cases))
	for i, tc := range cases {
		ev := conference(fmt.Sprintf("evt-aud-%d", i), tomorrowMorning())
		c.register(attendee(ev, ev.ID+"-ip", events.ModeInPerson), attendee(ev, ev.ID+"-on", events.ModeOnline))
		c.publishEvent(events.EventCreated, ev)
		v1 := firstAgenda(ev)
		setups[i] = setup{ev: ev, v1: v1, v2: nextRelease(v1, tc.change)}
		c.publishRelease(v1)
	}
	for _, s := range setups {
		c.waitNotice(s.ev.ID, 1)
	}
	for _, s := range setups {
		c.publishRelease(s.v2)
	}
	var total int
	for i, s := range setups {
		rec := c.waitNotice(s.ev.ID, 2)
		if rec.Sent != len(cases[i].want) {
			t.Errorf("%s: notice recorded with %d emails, want %d", cases[i].name, rec.Sent, len(cases[i].want))
		}
		total += len(cases[i].want)
	}
	jobs := c.waitKind(kindAgenda, total)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := setups[i].ev
			got := map[string][]string{}
			for _, j := range jobs {
				if j.EventID != ev.ID {
					continue
				}
				audience := strings.TrimPrefix(j.RegistrationID, ev.ID+"-")
				if _, dup := got[audience]; dup {
					t.Errorf("two notices to %s", j.RegistrationID)
				}
				got[audience] = []string{}
				for uid, e := range noticeFeedOf(t, j) {
					id := strings.TrimSuffix(uid, "@plenary.test")
					got[audience] = append(got[audience], id)
					cancelled := id == "s-gone" || (id == "s-data" && tc.name == "an in-person session cancelled")
					if (e.Status == "CANCELLED") != cancelled || e.Sequence != 2 {
						t.Errorf("%s: %s is %s at SEQUENCE %d", j.RegistrationID, uid, e.Status, e.Sequence)
					}
				}
				slices.Sort(got[audience])
			}
			if !maps.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("notices %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConcerns(t *testing.T) {
	hybrid := &events.Session{ID: "h", Format: events.FormatHybrid}
	inPerson := &events.Session{ID: "p", Format: events.FormatInPerson}
	online := &events.Session{ID: "o", Format: events.FormatOnline}
	cancelled := &events.Session{ID: "h", Format: events.FormatHybrid, Cancelled: true}
	all := []string{events.ChangeMoved, events.ChangeRelocated, events.ChangeRenamed, events.ChangeSpeakers,
		events.ChangeFormat, events.ChangeLink, events.ChangeDetails}
	cases := []struct {
		name          string
		change        events.SessionChange
		inPerson, onl []string
	}{
		{"everything about a hybrid session", events.SessionChange{Kinds: all, Before: hybrid, After: hybrid},
			[]string{events.ChangeMoved, events.ChangeRelocated, events.ChangeRenamed, events.ChangeSpeakers, events.ChangeFormat, events.ChangeDetails},
			[]string{events.ChangeMoved, events.ChangeRenamed, events.ChangeSpeakers, events.ChangeFormat, events.ChangeLink, events.ChangeDetails}},
		{"everything about an in-person session", events.SessionChange{Kinds: all, Before: inPerson, After: inPerson},
			[]string{events.ChangeMoved, events.ChangeRelocated, events.ChangeRenamed, events.ChangeSpeakers, events.ChangeFormat, events.ChangeDetails}, nil},
		{"everything about an online session", events.SessionChange{Kinds: all, Before: online, After: online},
			nil, []string{events.ChangeMoved, events.ChangeRenamed, events.ChangeSpeakers, events.ChangeFormat, events.ChangeLink, events.ChangeDetails}},
		{"hybrid to online", events.SessionChange{Kinds: []string{events.ChangeFormat, events.ChangeMoved}, Before: hybrid, After: online},
			[]string{events.ChangeFormat}, []string{events.ChangeFormat, events.ChangeMoved}},
		{"added online", events.SessionChange{Kinds: []string{events.ChangeAdded}, After: online},
			nil, []string{events.ChangeAdded}},
		{"cancelled hybrid", events.SessionChange{Kinds: []string{events.ChangeCancelled}, Before: hybrid, After: cancelled},
			[]string{events.ChangeCancelled}, []string{events.ChangeCancelled}},
		{"cancelled in person", events.SessionChange{Kinds: []string{events.ChangeCancelled}, Before: inPerson, After: inPerson},
			[]string{events.ChangeCancelled}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := concerns(tc.change, events.ModeInPerson); !slices.Equal(got, tc.inPerson) {
				t.Errorf("in person: %v, want %v", got, tc.inPerson)
			}
			if got := concerns(tc.change, events.ModeOnline); !slices.Equal(got, tc.onl) {
				t.Errorf("online: %v, want %v", got, tc.onl)
			}
		})
	}
}
