package agenda

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// published is the response to a publish.
type published struct {
	Version     int
	Previous    int
	Note        string
	PublishedBy string `json:"published_by"`
	Diff        []events.SessionChange
}

func kindsOf(diff []events.SessionChange) map[string][]string {
	out := map[string][]string{}
	for _, c := range diff {
		out[c.SessionID] = c.Kinds
	}
	return out
}

func TestPublishReleasesWithDiffs(t *testing.T) {
	h := start(t)
	h.event(t, roundtable("ev1"))
	trafficking := h.session(t, "ev1", panel("Human trafficking", 10, "Neuer Saal"))
	terrorism := h.session(t, "ev1", panel("Countering terrorism", 14, "Neuer Saal"))
	border := h.session(t, "ev1", panel("Border technologies", 16, "Neuer Saal"))
	h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+terrorism, map[string]any{"join_url": "https://meet.example.org/t1"})

	r := h.admin.Do(t, "POST", "/admin/events/ev1/agenda/releases", map[string]any{"note": "First programme"})
	if r.Status != http.StatusCreated {
		t.Fatalf("publish: %d %s", r.Status, r.Body)
	}
	var v1 published
	r.JSON(t, &v1)
	if v1.Version != 1 || v1.Previous != 0 || v1.PublishedBy != "secretariat" || len(v1.Diff) != 3 {
		t.Fatalf("release 1: %+v", v1)
	}
	for id, k := range kindsOf(v1.Diff) {
		if !slices.Equal(k, []string{events.ChangeAdded}) {
			t.Errorf("release 1: %s %v, want added", id, k)
		}
	}

	// Nothing changed: refused, clearly.
	r = h.admin.Do(t, "POST", "/admin/events/ev1/agenda/releases", map[string]any{"note": "again"})
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "no_changes") {
		t.Fatalf("publishing no change: %d %s", r.Status, r.Body)
	}

	// The panel moved from the Neuer Saal to the Ratsaal an hour before it
	// starts, its stream link replaced; another moved; one cancelled.
	h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+terrorism, map[string]any{"room": "Ratsaal", "join_url": "https://meet.example.org/t2"})
	h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+trafficking, map[string]any{"starts_at": at(0, 11, 0), "ends_at": at(0, 12, 0)})
	h.admin.Do(t, "DELETE", "/admin/events/ev1/sessions/"+border, nil)
	want := map[string][]string{
		terrorism:   {events.ChangeRelocated, events.ChangeLink},
		trafficking: {events.ChangeMoved},
		border:      {events.ChangeCancelled},
	}
	r = h.admin.Do(t, "GET", "/admin/events/ev1/agenda/draft/diff", nil)
	var preview published
	r.JSON(t, &preview)
	if preview.Version != 2 || !reflect.DeepEqual(kindsOf(preview.Diff), want) {
		t.Fatalf("preview: %s", r.Body)
	}
	plain := testkit.Client{Base: h.base, Token: "plain"}
	r = plain.Do(t, "POST", "/admin/events/ev1/agenda/releases", map[string]any{"note": "Ratsaal"})
	var v2 published
	r.JSON(t, &v2)
	if r.Status != http.StatusCreated || v2.Version != 2 || v2.Previous != 1 || v2.PublishedBy != "organizer" ||
		!reflect.DeepEqual(kindsOf(v2.Diff), want) {
		t.Fatalf("release 2: %d %s", r.Status, r.Body)
	}
	for _, c := range v2.Diff {
		if c.SessionID == terrorism && (c.Before.Room != "Neuer Saal" || c.After.Room != "Ratsaal" ||
			c.Before.JoinURL != "https://meet.example.org/t1" || c.After.JoinURL != "https://meet.example.org/t2" || c.After.Sequence != 2) {
			t.Errorf("the relocation carries %+v → %+v", c.Before, c.After)
		}
	}

	// The release event: the snapshot and the diff, once per release.
	var rels []events.Release
	testkit.Eventually(t, 10*time.Second, func() error {
		rels = nil
		for _, env := range testkit.OfType(testkit.ReadStream(t, h.bus.JS, events.StreamAgenda), events.AgendaReleasePublished) {
			var rel events.Release
			if err := env.Decode(&rel); err != nil {
				return err
			}
			rels = append(rels, rel)
		}
		if len(rels) != 2 {
			return fmt.Errorf("%d release events", len(rels))
		}
		return nil
	})
	got := rels[1]
	if got.Version != 2 || got.EventID != "ev1" || got.Slug != "roundtable-ev1" || got.Timezone != "Europe/Vienna" ||
		len(got.Sessions) != 3 || !reflect.DeepEqual(kindsOf(got.Changes), want) {
		t.Fatalf("event of release 2: %+v", got)
	}
	seq := map[string]int{}
	for _, s := range got.Sessions {
		seq[s.ID] = s.Sequence
		if s.ID == border && !s.Cancelled {
			t.Errorf("the deleted session is not kept as cancelled: %+v", s)
		}
	}
	if seq[trafficking] != 2 || seq[terrorism] != 2 || seq[border] != 2 {
		t.Errorf("sequences %v", seq)
	}

	// A third release changing one session leaves the others' sequence.
	h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+trafficking, map[string]any{"title": "Trafficking in human beings"})
	if v := h.publish(t, "ev1", ""); v != 3 {
		t.Fatalf("version %d", v)
	}
	var v3 events.Release
	h.admin.Do(t, "GET", "/admin/events/ev1/agenda/releases/3", nil).JSON(t, &v3)
	for _, s := range v3.Sessions {
		if want := map[string]int{trafficking: 3, terrorism: 2, border: 2}[s.ID]; s.Sequence != want {
			t.Errorf("release 3: %s sequence %d, want %d", s.Title, s.Sequence, want)
		}
	}
	if !reflect.DeepEqual(kindsOf(v3.Changes), map[string][]string{trafficking: {events.ChangeRenamed}}) {
		t.Errorf("release 3 diff %v", kindsOf(v3.Changes))
	}
}

func TestPublicViewsHideMeetingLinksAndOrganisers(t *testing.T) {
	h := start(t)
	h.event(t, roundtable("ev1"))
	r := h.public.Do(t, "GET", "/api/events/roundtable-ev1/agenda", nil)
	if r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), "no_release") {
		t.Fatalf("before any release: %d %s", r.Status, r.Body)
	}
	body := panel("Border technologies", 10, "Neuer Saal")
	body["join_url"] = "https://meet.example.org/secret-stream"
	id := h.session(t, "ev1", body)
	h.publish(t, "ev1", "First")
	h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+id, map[string]any{"join_url": "https://meet.example.org/secret-2"})
	h.publish(t, "ev1", "Link")

	for _, path := range []string{
		"/api/events/roundtable-ev1/agenda",
		"/api/events/roundtable-ev1/agenda/releases/1",
		"/api/events/roundtable-ev1/agenda/releases/2",
		"/api/events/roundtable-ev1/agenda/changes",
		"/api/events/roundtable-ev1/agenda.ics",
	} {
		r := h.public.Do(t, "GET", path, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
		if b := string(r.Body); strings.Contains(b, "secret") || strings.Contains(b, "secretariat") || strings.Contains(b, "published_by") {
			t.Errorf("%s leaks a meeting link or an organiser: %s", path, b)
		}
	}
	var latest events.Release
	h.public.Do(t, "GET", "/api/events/roundtable-ev1/agenda", nil).JSON(t, &latest)
	if latest.Version != 2 || len(latest.Sessions) != 1 || !reflect.DeepEqual(kindsOf(latest.Changes), map[string][]string{id: {events.ChangeLink}}) {
		t.Fatalf("latest: %+v", latest)
	}
	var changes struct{ Releases []releaseSummary }
	h.public.Do(t, "GET", "/api/events/roundtable-ev1/agenda/changes", nil).JSON(t, &changes)
	if len(changes.Releases) != 2 || changes.Releases[0].Version != 2 || changes.Releases[0].Note != "Link" || changes.Releases[1].Note != "First" {
		t.Fatalf("changelog: %+v", changes)
	}
	ics := h.public.Do(t, "GET", "/api/events/roundtable-ev1/agenda.ics", nil)
	if ct := ics.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/calendar") || !strings.Contains(string(ics.Body), "UID:"+id+"@plenary.example.org") {
		t.Fatalf("ics: %s %s", ct, ics.Body)
	}
	if r := h.public.Do(t, "GET", "/api/events/roundtable-ev1/agenda.ics", nil, "If-None-Match", ics.Header.Get("ETag")); r.Status != http.StatusNotModified {
		t.Errorf("revalidating the feed: %d", r.Status)
	}
	for path, want := range map[string]int{
		"/api/events/roundtable-ev1/agenda/releases/3":  http.StatusNotFound,
		"/api/events/roundtable-ev1/agenda/releases/0":  http.StatusNotFound,
		"/api/events/roundtable-ev1/agenda/releases/x":  http.StatusNotFound,
		"/api/events/nope/agenda":                       http.StatusNotFound,
		"/api/events/nope/agenda.ics":                   http.StatusNotFound,
		"/admin/events/ev1/agenda/releases/2":           http.StatusUnauthorized,
		"/api/events/roundtable-ev1/agenda/releases/-1": http.StatusNotFound,
	} {
		if r := h.public.Do(t, "GET", path, nil); r.Status != want {
			t.Errorf("%s: %d, want %d", path, r.Status, want)
		}
	}
	// Organisers see the links and who published.
	var admin events.Release
	h.admin.Do(t, "GET", "/admin/events/ev1/agenda/releases/2", nil).JSON(t, &admin)
	if admin.Sessions[0].JoinURL != "https://meet.example.org/secret-2" || admin.PublishedBy != "secretariat" {
		t.Fatalf("admin view: %+v", admin)
	}
}

// TestConcurrentPublishes: two organisers edit and publish at the same
// moment, round after round. Versions are consecutive, each release's diff
// is exactly its snapshot against the one before, every edit reaches a
// release, and each release is announced once.
func TestConcurrentPublishes(t *testing.T) {
	h := start(t)
	h.event(t, roundtable("ev1"))
	ids := []string{
		h.session(t, "ev1", panel("Human trafficking", 10, "Neuer Saal")),
		h.session(t, "ev1", panel("Countering terrorism", 12, "Ratsaal")),
	}
	h.publish(t, "ev1", "start")
	const rounds = 8
	refused := 0
	for round := 1; round <= rounds; round++ {
		var wg sync.WaitGroup
		statuses := make([]int, len(ids))
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := h.admin.Do(t, "PATCH", "/admin/events/ev1/sessions/"+id, map[string]any{"title": fmt.Sprintf("Panel %d round %d", i, round)}); r.Status != http.StatusOK {
					t.Errorf("patch: %d %s", r.Status, r.Body)
				}
				statuses[i] = h.admin.Do(t, "POST", "/admin/events/ev1/agenda/releases", map[string]any{"note": fmt.Sprint(round, i)}).Status
			}()
		}
		wg.Wait()
		for _, s := range statuses {
			switch s {
			case http.StatusCreated:
			case http.StatusConflict:
				refused++ // the other publish took this one's edit along
			default:
				t.Fatalf("round %d: publish answered %d", round, s)
			}
		}
	}
	var list struct{ Releases []releaseSummary }
	h.admin.Do(t, "GET", "/admin/events/ev1/agenda/releases", nil).JSON(t, &list)
	n := len(list.Releases)
	if n != 1+2*rounds-refused {
		t.Fatalf("%d releases for %d publishes of which %d were refused", n, 1+2*rounds, refused)
	}
	var prev *events.Release
	for v := 1; v <= n; v++ {
		var rel events.Release
		h.admin.Do(t, "GET", "/admin/events/ev1/agenda/releases/"+strconv.Itoa(v), nil).JSON(t, &rel)
		if rel.Version != v {
			t.Fatalf("release %d says version %d", v, rel.Version)
		}
		var before []events.Session
		if prev != nil {
			before = prev.Sessions
			if rel.Previous != prev.Version {
				t.Fatalf("release %d diffed against %d", v, rel.Previous)
			}
		}
		if want := events.Diff(before, rel.Sessions); !reflect.DeepEqual(kindsOf(rel.Changes), kindsOf(want)) || len(rel.Changes) == 0 {
			t.Fatalf("release %d diff %v, want %v", v, kindsOf(rel.Changes), kindsOf(want))
		}
		prev = &rel
	}
	for i, s := range prev.Sessions {
		if want := fmt.Sprintf("Panel %d round %d", i, rounds); s.Title != want {
			t.Errorf("latest release has %q, want %q: an edit was lost", s.Title, want)
		}
	}
	races, _ := testkit.Metric(h.public.Do(t, "GET", "/metrics", nil).Body, "agenda_version_races_total")
	envs := testkit.OfType(testkit.ReadStream(t, h.bus.JS, events.StreamAgenda), events.AgendaReleasePublished)
	t.Logf("%d rounds: %d releases, %d publishes refused as no change, %.0f lost races retried, %d release events", rounds, n, refused, races, len(envs))
	if len(envs) != n {
		t.Fatalf("%d release events for %d releases", len(envs), n)
	}
}
