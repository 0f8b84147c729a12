package registration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// These tests follow registrations through their life over HTTP: the
// requests stream, the decider, the database and the outcome events, as a
// participant and an organiser see them.

// startAnother starts a second registration service on the harness's NATS
// and database, as a second replica, and returns its clients.
func (h *harness) startAnother() (admin, pub testkit.Client) {
	h.t.Helper()
	cfg := h.cfg
	var base string
	cfg.Listener, base = testkit.Listen(h.t)
	testkit.Serve(h.t, func(ctx context.Context) error { return Run(ctx, cfg, testkit.Logger(h.t)) })
	admin, pub = testkit.Client{Base: base, Token: adminToken}, testkit.Client{Base: base}
	testkit.Eventually(h.t, 10*time.Second, func() error {
		if r := pub.Do(h.t, "GET", "/readyz", nil); r.Status != 200 {
			return fmt.Errorf("readyz %d: %s", r.Status, r.Body)
		}
		return nil
	})
	return admin, pub
}

func regBody(name, email, mode string, extra ...func(map[string]any)) map[string]any {
	b := map[string]any{"name": name, "email": email, "mode": mode, "consent": true, "waitlist_ok": true}
	for _, f := range extra {
		f(b)
	}
	return b
}

// registerVia posts a registration through c and expects it accepted.
func registerVia(t *testing.T, c testkit.Client, slug string, body map[string]any) {
	t.Helper()
	if r := c.Do(t, "POST", "/api/events/"+slug+"/registrations", body); r.Status != http.StatusAccepted {
		t.Errorf("register %v: %d %s", body["email"], r.Status, r.Body)
	}
}

// outcome waits for the first published event of type typ about email.
func (h *harness) outcome(typ, email string) events.Registration {
	h.t.Helper()
	var got events.Registration
	testkit.Eventually(h.t, 10*time.Second, func() error {
		for _, p := range h.published(typ) {
			if strings.EqualFold(p.Email, email) {
				got = p
				return nil
			}
		}
		return fmt.Errorf("no %s about %s yet", typ, email)
	})
	return got
}

// outcomeWith waits for a published event of type typ about registration
// id with the given reason.
func (h *harness) outcomeWith(typ, id, reason string) events.Registration {
	h.t.Helper()
	var got events.Registration
	testkit.Eventually(h.t, 10*time.Second, func() error {
		for _, p := range h.published(typ) {
			if p.ID == id && p.Reason == reason {
				got = p
				return nil
			}
		}
		return fmt.Errorf("no %s (%s) about %s yet", typ, reason, id)
	})
	return got
}

// token is the last path segment of a manage or join URL.
func token(u string) string { return u[strings.LastIndexByte(u, '/')+1:] }

func emails(ps []events.Registration) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Email
	}
	return out
}

// requestsInStream reads REGISTRATION_REQUESTS in stream order.
func requestsInStream(t *testing.T, js jetstream.JetStream) []request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, events.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []request
	for range stream.CachedInfo().State.Msgs {
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		bodies, err := bus.SplitGroup(msg.Headers(), msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		for _, body := range bodies {
			var req request
			if err := json.Unmarshal(body, &req); err != nil {
				t.Fatalf("request %s: %v", body, err)
			}
			want := events.RequestSubject(req.EventID, req.Kind)
			if msg.Headers().Get(bus.HeaderGroup) != "" {
				want = events.RequestGroupSubject
			}
			if msg.Subject() != want {
				t.Fatalf("request on %s, want %s", msg.Subject(), want)
			}
			out = append(out, req)
		}
	}
	return out
}

func (h *harness) stats(id string) eventStats {
	h.t.Helper()
	var st eventStats
	r := h.admin.Do(h.t, "GET", "/admin/events/"+id+"/stats", nil)
	if r.Status != http.StatusOK {
		h.t.Fatalf("stats: %d %s", r.Status, r.Body)
	}
	r.JSON(h.t, &st)
	return st
}

// confirmedNow counts an event's confirmed registrations as the stats show
// them, -1 when they cannot be read; safe to call outside the test's
// goroutine.
func confirmedNow(h *harness, eventID string) int64 {
	req, err := http.NewRequest("GET", h.admin.Base+"/admin/events/"+eventID+"/stats", nil)
	if err != nil {
		return -1
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st eventStats
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return -1
	}
	return int64(st.ByMode[events.ModeInPerson][events.StatusConfirmed])
}

type manageJSON struct {
	ID        string         `json:"id"`
	Status    string         `json:"status"`
	Mode      string         `json:"mode"`
	WantsMode string         `json:"wants_mode"`
	Position  int            `json:"waitlist_position"`
	Name      string         `json:"name"`
	Email     string         `json:"email"`
	Locale    string         `json:"locale"`
	Timezone  string         `json:"timezone"`
	Answers   map[string]any `json:"answers"`
	JoinURL   string         `json:"join_url"`
	Erased    bool           `json:"erased"`
}

func (h *harness) manage(tok string) manageJSON {
	h.t.Helper()
	r := h.pub.Do(h.t, "GET", "/api/manage/"+tok, nil)
	if r.Status != http.StatusOK {
		h.t.Fatalf("manage view: %d %s", r.Status, r.Body)
	}
	var v manageJSON
	r.JSON(h.t, &v)
	return v
}

// A rush of 300 for 60 seats: exactly 60 confirmed, the rest waitlisted in
// the order their requests were stored; ten cancellations promote exactly
// the first ten in line, once each.
func TestRushIsDecidedInArrivalOrder(t *testing.T) {
	h := newHarness(t)
	ev := h.createEvent("rush-300", func(b map[string]any) {
		b["capacity"] = map[string]any{"in_person": 60}
		b["registration"] = map[string]any{"waitlist": true}
	})
	const n, seats = 300, 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			registerVia(t, h.pub, "rush-300", regBody(fmt.Sprintf("P %d", i), fmt.Sprintf("p%03d@example.org", i), events.ModeInPerson))
		}()
	}
	wg.Wait()
	confirmed := h.waitPublished(events.RegistrationConfirmed, seats)
	waitlisted := h.waitPublished(events.RegistrationWaitlisted, n-seats)

	var order []string
	for _, req := range requestsInStream(t, h.bus.JS) {
		if req.Kind == kindRegister && req.EventID == ev.ID {
			order = append(order, req.Register.Email)
		}
	}
	if len(order) != n {
		t.Fatalf("%d registrations in the requests stream, want %d", len(order), n)
	}
	if got, want := slices.Sorted(slices.Values(emails(confirmed))), slices.Sorted(slices.Values(order[:seats])); !slices.Equal(got, want) {
		t.Fatalf("confirmed %v,\nwant the first %d requests %v", got, seats, want)
	}
	if got := emails(waitlisted); !slices.Equal(got, order[seats:]) {
		t.Fatalf("waitlisted in the order %v,\nwant the requests' order %v", got, order[seats:])
	}

	var cancels sync.WaitGroup
	for _, p := range confirmed[:10] {
		cancels.Add(1)
		go func() {
			defer cancels.Done()
			r := h.pub.Do(t, "POST", "/api/manage/"+token(p.ManageURL)+"/cancel", nil)
			if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"status":"cancelled"`) {
				t.Errorf("cancel %s: %d %s", p.Email, r.Status, r.Body)
			}
		}()
	}
	cancels.Wait()
	h.waitPublished(events.RegistrationPromoted, 10)
	testkit.WaitIdle(t, h.bus.JS, events.StreamRequests, deciderDurable)
	promoted := h.published(events.RegistrationPromoted)
	if got := emails(promoted); !slices.Equal(got, order[seats:seats+10]) {
		t.Fatalf("promoted %v,\nwant the first ten in line %v", got, order[seats:seats+10])
	}
	if n := len(h.published(events.RegistrationCancelled)); n != 10 {
		t.Fatalf("%d cancellations announced, want 10", n)
	}
	st := h.stats(ev.ID)
	if st.SeatsLeft[events.ModeInPerson] != 0 || st.Waiting[events.ModeInPerson] != n-seats-10 ||
		st.ByMode[events.ModeInPerson][events.StatusConfirmed] != seats {
		t.Fatalf("stats: seats left %v, waitlist %v, by mode %v; want 0 left, %d waiting, %d confirmed",
			st.SeatsLeft, st.Waiting, st.ByMode, n-seats-10, seats)
	}
}

// A capacity cut below the confirmed keeps everyone and confirms nobody new.
func TestCapacityCutThroughHTTP(t *testing.T) {
	h := newHarness(t)
	ev := h.createEvent("cut")
	for i := range 3 {
		registerVia(t, h.pub, "cut", regBody("P", fmt.Sprintf("early%d@example.org", i), events.ModeOnline))
	}
	h.waitPublished(events.RegistrationConfirmed, 3)
	r := h.admin.Do(t, "PATCH", "/admin/events/"+ev.ID, []byte(`{"capacity":{"online":2}}`), "Content-Type", "application/merge-patch+json")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"online":2`) {
		t.Fatalf("cut capacity: %d %s", r.Status, r.Body)
	}
	for i := range 2 {
		registerVia(t, h.pub, "cut", regBody("P", fmt.Sprintf("late%d@example.org", i), events.ModeOnline))
	}
	for _, p := range h.waitPublished(events.RegistrationRejected, 2) {
		if p.Reason != "full" {
			t.Errorf("%s rejected with reason %q, want full", p.Email, p.Reason)
		}
	}
	if n := len(h.published(events.RegistrationConfirmed)); n != 3 {
		t.Fatalf("%d confirmed after the cut, want still 3", n)
	}
	st := h.stats(ev.ID)
	if st.ByMode[events.ModeOnline][events.StatusConfirmed] != 3 || st.OverCapacity[events.ModeOnline] != 1 || st.SeatsLeft[events.ModeOnline] != 0 {
		t.Fatalf("stats: by mode %v, over capacity %v, seats left %v", st.ByMode, st.OverCapacity, st.SeatsLeft)
	}
}

// Two replicas take registrations for one event after a cut: one decider
// decides them all, and the cut holds.
func TestTwoServicesNeverOversellAfterACut(t *testing.T) {
	h := newHarness(t)
	admin2, pub2 := h.startAnother()
	pubs, admins := []testkit.Client{h.pub, pub2}, []testkit.Client{h.admin, admin2}
	ev := h.createEvent("two-replicas", func(b map[string]any) { b["capacity"] = map[string]any{"in_person": 10} })
	for i := range 10 {
		registerVia(t, pubs[i%2], "two-replicas", regBody("P", fmt.Sprintf("first%d@example.org", i), events.ModeInPerson))
	}
	first := h.waitPublished(events.RegistrationConfirmed, 10)
	for i, p := range first[:5] {
		r := admins[i%2].Do(t, "POST", "/admin/registrations/"+p.ID+"/cancel", nil)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"status":"cancelled"`) {
			t.Fatalf("cancel %s through replica %d: %d %s", p.ID, i%2, r.Status, r.Body)
		}
	}
	r := admin2.Do(t, "PATCH", "/admin/events/"+ev.ID, []byte(`{"capacity":{"in_person":6}}`), "Content-Type", "application/merge-patch+json")
	if r.Status != http.StatusOK {
		t.Fatalf("cut to 6: %d %s", r.Status, r.Body)
	}

	var most atomic.Int64
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() { // what an organiser refreshing the stats would see
		defer close(watched)
		for {
			select {
			case <-done:
				return
			default:
			}
			if n := confirmedNow(h, ev.ID); n > most.Load() {
				most.Store(n)
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			registerVia(t, pubs[i%2], "two-replicas", regBody("P", fmt.Sprintf("rush%d@example.org", i), events.ModeInPerson))
		}()
	}
	wg.Wait()
	h.waitPublished(events.RegistrationRejected, 19)
	testkit.WaitIdle(t, h.bus.JS, events.StreamRequests, deciderDurable)
	close(done)
	<-watched
	if n := len(h.published(events.RegistrationConfirmed)); n != 11 {
		t.Fatalf("%d confirmations announced, want the 10 before the cut and 1 after", n)
	}
	st := h.stats(ev.ID)
	if c := st.ByMode[events.ModeInPerson][events.StatusConfirmed]; c != 6 || most.Load() > 6 {
		t.Fatalf("%d confirmed in the end, at most %d on the way; capacity 6", c, most.Load())
	}
}

func TestManageAPI(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ResendPerHour = 2 })
	h.createEvent("manage-api", func(b map[string]any) {
		b["capacity"] = map[string]any{"online": 1}
		b["registration"] = map[string]any{"waitlist": true}
		b["questions"] = []map[string]any{
			{"id": "organisation", "label": "Organisation", "type": "text", "required": true},
			{"id": "panel", "label": "Panel", "type": "select", "options": []string{"Borders", "Trafficking"}},
		}
	})
	answers := func(b map[string]any) { b["answers"] = map[string]any{"organisation": "OSCE"} }
	registerVia(t, h.pub, "manage-api", regBody("Online One", "online@example.org", events.ModeOnline, answers))
	online := h.outcome(events.RegistrationConfirmed, "online@example.org")
	registerVia(t, h.pub, "manage-api", regBody("Waiting", "waiting@example.org", events.ModeOnline, answers))
	waiting := h.outcome(events.RegistrationWaitlisted, "waiting@example.org")
	registerVia(t, h.pub, "manage-api", regBody("Venue", "venue@example.org", events.ModeInPerson, answers))
	venue := h.outcome(events.RegistrationConfirmed, "venue@example.org")
	tok := token(venue.ManageURL)

	t.Run("view", func(t *testing.T) {
		if v := h.manage(token(online.ManageURL)); v.Status != events.StatusConfirmed || v.Position != 0 ||
			!strings.HasPrefix(v.JoinURL, "http://plenary.test/j/") {
			t.Errorf("confirmed online: %+v", v)
		}
		if v := h.manage(token(waiting.ManageURL)); v.Status != events.StatusWaitlisted || v.Position != 1 || v.JoinURL != "" {
			t.Errorf("waitlisted online: %+v", v)
		}
		if v := h.manage(tok); v.Status != events.StatusConfirmed || v.JoinURL != "" || v.Name != "Venue" {
			t.Errorf("confirmed in person: %+v", v)
		}
	})

	t.Run("change details and mode", func(t *testing.T) {
		r := h.pub.Do(t, "PATCH", "/api/manage/"+tok, map[string]any{
			"name": "Ada Lovelace", "locale": "fr", "timezone": "America/New_York",
			"answers": map[string]any{"organisation": "ODIHR", "panel": "Borders"},
		})
		var v manageJSON
		r.JSON(t, &v)
		if r.Status != http.StatusOK || v.Name != "Ada Lovelace" || v.Locale != "fr" || v.Timezone != "America/New_York" ||
			v.Answers["organisation"] != "ODIHR" || v.Answers["panel"] != "Borders" {
			t.Fatalf("patch details: %d %s", r.Status, r.Body)
		}
		if p := h.outcomeWith(events.RegistrationUpdated, venue.ID, "details_changed"); p.Name != "Ada Lovelace" || p.Locale != "fr" {
			t.Fatalf("announced %+v", p)
		}

		r = h.pub.Do(t, "PATCH", "/api/manage/"+tok, map[string]any{"mode": "online"})
		v = manageJSON{}
		r.JSON(t, &v)
		if r.Status != http.StatusOK || v.Status != events.StatusConfirmed || v.Mode != events.ModeInPerson ||
			v.WantsMode != events.ModeOnline || v.Position != 2 {
			t.Fatalf("switch to the full online mode: %d %s; want confirmed in person, waiting second for online", r.Status, r.Body)
		}
		r = h.pub.Do(t, "PATCH", "/api/manage/"+tok, map[string]any{"mode": "in_person"})
		v = manageJSON{}
		r.JSON(t, &v)
		if r.Status != http.StatusOK || v.WantsMode != "" || v.Position != 0 || v.Mode != events.ModeInPerson {
			t.Fatalf("switch back: %d %s", r.Status, r.Body)
		}
		if v := h.manage(token(waiting.ManageURL)); v.Position != 1 {
			t.Fatalf("the waitlisted is at position %d after the switch was withdrawn", v.Position)
		}
	})

	t.Run("invalid changes", func(t *testing.T) {
		cases := map[string]struct {
			patch map[string]any
			field string
		}{
			"empty name":       {map[string]any{"name": "  "}, "name"},
			"control in name":  {map[string]any{"name": "Ada\u2028Lovelace"}, "name"},
			"unknown locale":   {map[string]any{"locale": "xx"}, "locale"},
			"unknown zone":     {map[string]any{"timezone": "Mars/Olympus"}, "timezone"},
			"not an option":    {map[string]any{"answers": map[string]any{"organisation": "OSCE", "panel": "Piracy"}}, "answers.panel"},
			"required missing": {map[string]any{"answers": map[string]any{"panel": "Borders"}}, "answers.organisation"},
			"unknown mode":     {map[string]any{"mode": "hologram"}, "mode"},
		}
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				r := h.pub.Do(t, "PATCH", "/api/manage/"+tok, tc.patch)
				if r.Status != http.StatusUnprocessableEntity || r.Header.Get("Content-Type") != "application/problem+json" ||
					!strings.Contains(string(r.Body), `"field":"`+tc.field+`"`) {
					t.Fatalf("%d %s %s, want 422 problem naming %s", r.Status, r.Header.Get("Content-Type"), r.Body, tc.field)
				}
			})
		}
		if v := h.manage(tok); v.Name != "Ada Lovelace" || v.Locale != "fr" {
			t.Fatalf("an invalid change changed %+v", v)
		}
	})

	t.Run("resend link, limited", func(t *testing.T) {
		for i := range 2 {
			if r := h.pub.Do(t, "POST", "/api/manage/"+tok+"/resend-link", nil); r.Status != http.StatusOK {
				t.Fatalf("resend %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		sent := h.waitPublished(events.RegistrationLinkRequested, 2)
		if sent[0].ID != venue.ID || sent[0].ManageURL != venue.ManageURL {
			t.Fatalf("link requested %+v", sent[0])
		}
		r := h.pub.Do(t, "POST", "/api/manage/"+tok+"/resend-link", nil)
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("third resend within the hour: %d %s, want 429", r.Status, r.Body)
		}
		testkit.WaitIdle(t, h.bus.JS, events.StreamRequests, deciderDurable)
		if n := len(h.published(events.RegistrationLinkRequested)); n != 2 {
			t.Fatalf("%d links sent, want 2", n)
		}
	})

	t.Run("export", func(t *testing.T) {
		r := h.pub.Do(t, "GET", "/api/manage/"+tok+"/export", nil)
		if r.Status != http.StatusOK || !strings.Contains(r.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("export: %d %v", r.Status, r.Header)
		}
		var got struct {
			Registration struct {
				Name, Email, Timezone, Locale, Mode, Status string
				Answers                                     map[string]any
				Consent                                     Consent
			}
			Email string
			Event struct{ ID, Title string }
		}
		r.JSON(t, &got)
		reg := got.Registration
		if reg.Name != "Ada Lovelace" || reg.Email != "venue@example.org" || got.Email != "venue@example.org" ||
			reg.Timezone != "America/New_York" || reg.Locale != "fr" || reg.Answers["organisation"] != "ODIHR" ||
			!reg.Consent.Given || got.Event.Title == "" {
			t.Fatalf("export: %s", r.Body)
		}
	})

	t.Run("erase", func(t *testing.T) {
		r := h.pub.Do(t, "DELETE", "/api/manage/"+tok, nil)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"erased"`) {
			t.Fatalf("erase: %d %s", r.Status, r.Body)
		}
		if p := h.outcomeWith(events.RegistrationErased, venue.ID, "participant"); p.Name != "" || p.Email != "" {
			t.Fatalf("the erased event names the person: %+v", p)
		}
		v := h.manage(tok)
		if !v.Erased || v.Name != "" || v.Email != "" || v.Answers != nil || v.Status != events.StatusCancelled {
			t.Fatalf("after erasing: %+v", v)
		}
		if r := h.pub.Do(t, "GET", "/api/manage/"+tok+"/export", nil); strings.Contains(string(r.Body), "Ada Lovelace") ||
			strings.Contains(string(r.Body), "venue@example.org") {
			t.Fatalf("the export still holds personal data: %s", r.Body)
		}
	})
}

// Rotating a registration's links kills the old manage and join links;
// the ones announced with the rotation work. Invalid tokens of any kind get
// the same 404, which never repeats the token.
func TestLinksRotateAndNeverLeak(t *testing.T) {
	h := newHarness(t)
	h.createEvent("live-links", func(b map[string]any) {
		b["starts_at"] = time.Now().Add(-time.Hour).Format(time.RFC3339)
		b["ends_at"] = time.Now().Add(time.Hour).Format(time.RFC3339)
	})
	registerVia(t, h.pub, "live-links", regBody("Dai", "dai@example.org", events.ModeOnline))
	p := h.outcome(events.RegistrationConfirmed, "dai@example.org")
	oldManage, oldJoin := token(p.ManageURL), token(p.JoinURL)
	if r := h.pub.Do(t, "GET", "/j/"+oldJoin, nil); r.Status != http.StatusFound {
		t.Fatalf("join before rotating: %d", r.Status)
	}

	r := h.admin.Do(t, "POST", "/admin/registrations/"+p.ID+"/rotate-links", nil)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"status":"confirmed"`) {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	rotated := h.outcomeWith(events.RegistrationUpdated, p.ID, "links_rotated")
	newManage, newJoin := token(rotated.ManageURL), token(rotated.JoinURL)
	if newManage == oldManage || newJoin == oldJoin {
		t.Fatal("the rotation announced the old links")
	}
	if v := h.manage(newManage); v.Name != "Dai" {
		t.Fatalf("new manage link: %+v", v)
	}
	if r := h.pub.Do(t, "GET", "/j/"+newJoin, nil); r.Status != http.StatusFound || r.Header.Get("Location") != "https://meet.example.org/osce" {
		t.Fatalf("new join link: %d %q", r.Status, r.Header.Get("Location"))
	}

	tampered := newManage[:len(newManage)-1] + map[bool]string{true: "A", false: "B"}[strings.HasSuffix(newManage, "B")]
	cases := map[string]struct{ method, path, tok string }{
		"old manage link":         {"GET", "/api/manage/" + oldManage, oldManage},
		"old manage page":         {"GET", "/r/" + oldManage, oldManage},
		"old manage link, cancel": {"POST", "/api/manage/" + oldManage + "/cancel", oldManage},
		"old join link":           {"GET", "/j/" + oldJoin, oldJoin},
		"tampered":                {"GET", "/api/manage/" + tampered, tampered},
		"tampered page":           {"GET", "/r/" + tampered, tampered},
		"join token as manage":    {"GET", "/api/manage/" + newJoin, newJoin},
		"join token as page":      {"GET", "/r/" + newJoin, newJoin},
		"manage token as join":    {"GET", "/j/" + newManage, newManage},
		"page below a token":      {"GET", "/r/" + newManage + "/x", newManage},
		"api below a token":       {"GET", "/api/manage/" + newManage + "/x", newManage},
		"post below a token":      {"POST", "/api/manage/" + newManage + "/x", newManage},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := h.pub.Do(t, tc.method, tc.path, nil)
			if r.Status != http.StatusNotFound {
				t.Errorf("%d %s, want 404", r.Status, r.Body)
			}
			id, _, _ := strings.Cut(tc.tok, ".")
			if strings.Contains(string(r.Body), tc.tok) || strings.Contains(string(r.Body), id) {
				t.Errorf("the answer repeats the token: %s", r.Body)
			}
		})
	}
	for _, method := range []string{"PUT", "POST"} { // routed paths, other methods
		r := h.pub.Do(t, method, "/api/manage/"+newManage, nil)
		if (r.Status != http.StatusMethodNotAllowed && r.Status != http.StatusNotFound) || strings.Contains(string(r.Body), newManage) {
			t.Errorf("%s on a manage link: %d %s, want 405 or 404 without the token", method, r.Status, r.Body)
		}
	}
	if v := h.manage(newManage); v.Status != events.StatusConfirmed {
		t.Fatalf("the old link cancelled the registration: %+v", v)
	}
}

func TestOrganiserActionsAnswerTheOutcome(t *testing.T) {
	h := newHarness(t)
	h.createEvent("approvals", func(b map[string]any) {
		b["capacity"] = map[string]any{"in_person": 1}
		b["registration"] = map[string]any{"approval": "manual"}
	})
	ids := map[string]string{}
	for _, who := range []string{"ana", "ben", "cy"} {
		registerVia(t, h.pub, "approvals", regBody(who, who+"@example.org", events.ModeInPerson))
		ids[who] = h.outcome(events.RegistrationPending, who+"@example.org").ID
	}
	act := func(who, action string) (int, Registration, string) {
		t.Helper()
		id := ids[who]
		if id == "" {
			id = who
		}
		r := h.admin.Do(t, "POST", "/admin/registrations/"+id+"/"+action, nil)
		var reg Registration
		if r.Status == http.StatusOK {
			r.JSON(t, &reg)
		}
		return r.Status, reg, string(r.Body)
	}
	steps := []struct {
		who, action string
		status      int
		want        string // the registration's status after, or a problem's type
	}{
		{"ana", "approve", 200, events.StatusConfirmed},
		{"ben", "approve", 200, events.StatusWaitlisted}, // the one seat is taken
		{"cy", "reject", 200, events.StatusRejected},
		{"ana", "approve", 409, "conflict"},
		{"ana", "check-in", 200, events.StatusConfirmed},
		{"ana", "check-in", 200, events.StatusConfirmed}, // twice is fine
		{"ana", "cancel", 200, events.StatusCancelled},
		{"ana", "check-in", 409, "conflict"},
		{"ben", "teleport", 404, "not_found"},
		{"nobody", "approve", 404, "not_found"},
	}
	var checkedIn *time.Time
	for _, s := range steps {
		status, reg, body := act(s.who, s.action)
		if status != s.status {
			t.Fatalf("%s %s: %d %s, want %d", s.action, s.who, status, body, s.status)
		}
		if status == http.StatusOK && reg.Status != s.want {
			t.Fatalf("%s %s: answered %s, want %s", s.action, s.who, reg.Status, s.want)
		}
		if status != http.StatusOK && !strings.Contains(body, s.want) {
			t.Fatalf("%s %s: %s, want %s", s.action, s.who, body, s.want)
		}
		if s.action == "check-in" && status == http.StatusOK {
			if reg.CheckedInAt == nil || (checkedIn != nil && !reg.CheckedInAt.Equal(*checkedIn)) {
				t.Fatalf("checked in at %v, first at %v", reg.CheckedInAt, checkedIn)
			}
			checkedIn = reg.CheckedInAt
		}
		if s.action == "cancel" && reg.Reason != "organizer" {
			t.Fatalf("cancelled with reason %q", reg.Reason)
		}
	}
	if p := h.outcome(events.RegistrationPromoted, "ben@example.org"); p.Status != events.StatusConfirmed {
		t.Fatalf("ben after ana's cancellation: %+v", p)
	}
	if r := h.pub.Do(t, "POST", "/admin/registrations/"+ids["ben"]+"/cancel", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", r.Status)
	}
}

// The manage page's forms work without JavaScript.
func TestManagePageForms(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ResendPerHour = 5 })
	h.createEvent("forms")
	registerVia(t, h.pub, "forms", regBody("Alena", "alena@example.org", events.ModeInPerson))
	tok := token(h.outcome(events.RegistrationConfirmed, "alena@example.org").ManageURL)
	post := func(form url.Values) testkit.Response {
		t.Helper()
		form.Set("lang", "en") // as the page's forms carry it
		return h.pub.Do(t, "POST", "/r/"+tok, []byte(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	}
	steps := []struct {
		name   string
		form   url.Values
		status int
		done   string
		check  func(v manageJSON) bool
	}{
		{"save", url.Values{"action": {"save"}, "name": {"Alena K."}, "timezone": {"Asia/Tokyo"}, "locale": {"de"}}, 303, "saved",
			func(v manageJSON) bool { return v.Name == "Alena K." && v.Timezone == "Asia/Tokyo" && v.Locale == "de" }},
		{"switch", url.Values{"action": {"switch"}, "mode": {"online"}}, 303, "saved",
			func(v manageJSON) bool { return v.Mode == events.ModeOnline && v.Status == events.StatusConfirmed }},
		{"resend", url.Values{"action": {"resend"}}, 303, "link_sent", nil},
		{"cancel unconfirmed", url.Values{"action": {"cancel"}}, 422, "",
			func(v manageJSON) bool { return v.Status == events.StatusConfirmed }},
		{"cancel", url.Values{"action": {"cancel"}, "confirm": {"yes"}}, 303, "cancelled",
			func(v manageJSON) bool { return v.Status == events.StatusCancelled }},
		{"erase unconfirmed", url.Values{"action": {"erase"}}, 422, "",
			func(v manageJSON) bool { return !v.Erased }},
		{"erase", url.Values{"action": {"erase"}, "confirm": {"yes"}}, 303, "erased",
			func(v manageJSON) bool { return v.Erased && v.Name == "" }},
	}
	for _, s := range steps {
		r := post(s.form)
		if r.Status != s.status {
			t.Fatalf("%s: %d %s, want %d", s.name, r.Status, r.Body, s.status)
		}
		if s.status == http.StatusSeeOther {
			if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "/r/"+tok+"?done="+s.done+"&") {
				t.Fatalf("%s: redirected to %q, want done=%s", s.name, loc, s.done)
			}
		} else {
			body := string(r.Body)
			if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "Tick the box to confirm.") ||
				!strings.Contains(body, `name="action" value="`+s.form.Get("action")+`"`) {
				t.Fatalf("%s: the page is not shown again with the error: %s", s.name, body)
			}
		}
		if s.check != nil {
			if v := h.manage(tok); !s.check(v) {
				t.Fatalf("after %s: %+v", s.name, v)
			}
		}
	}
	if n := len(h.waitPublished(events.RegistrationLinkRequested, 1)); n != 1 {
		t.Fatalf("%d links sent", n)
	}
	h.waitPublished(events.RegistrationErased, 1)
}

// label is one translated text of each language's pages (pkg/i18n/locales).
var labels = map[string]struct{ register, manageTitle string }{
	"en": {"Register", "Your registration"},
	"fr": {"S’inscrire", "Votre inscription"},
	"de": {"Anmelden", "Ihre Anmeldung"},
	"it": {"Invia l’iscrizione", "La sua iscrizione"},
	"ru": {"Зарегистрироваться", "Ваша регистрация"},
	"es": {"Inscribirse", "Su inscripción"},
}

func TestPagesSpeakSixLanguages(t *testing.T) {
	h := newHarness(t)
	h.createEvent("polyglot", func(b map[string]any) { b["locales"] = []string{"en", "fr", "de", "it", "ru", "es"} })
	speaks := func(t *testing.T, r testkit.Response, lang, label string) {
		t.Helper()
		body := string(r.Body)
		if r.Status != http.StatusOK || !strings.Contains(body, `<html lang="`+lang+`">`) || !strings.Contains(body, label) {
			t.Fatalf("%d, want a page in %s with %q: %.600s", r.Status, lang, label, body)
		}
	}
	for lang, l := range labels {
		t.Run(lang, func(t *testing.T) {
			speaks(t, h.pub.Do(t, "GET", "/e/polyglot?lang="+lang, nil), lang, l.register)

			email := "reader-" + lang + "@example.org"
			form := url.Values{"name": {"Reader " + lang}, "email": {email}, "mode": {"online"}, "consent": {"true"},
				"locale": {lang}, "lang": {lang}}
			r := h.pub.Do(t, "POST", "/e/polyglot", []byte(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
			if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/e/polyglot?registered=1&lang="+lang {
				t.Fatalf("form in %s: %d %q %.300s", lang, r.Status, r.Header.Get("Location"), r.Body)
			}
			p := h.outcome(events.RegistrationConfirmed, email)
			if p.Locale != lang {
				t.Fatalf("registered with locale %q, want %s", p.Locale, lang)
			}
			tok := token(p.ManageURL)
			// The participant's own language, whatever the browser says.
			speaks(t, h.pub.Do(t, "GET", "/r/"+tok, nil, "Accept-Language", "en-GB,en;q=0.9"), lang, l.manageTitle)
			speaks(t, h.pub.Do(t, "GET", "/r/"+tok+"?lang=en", nil), "en", labels["en"].manageTitle)
		})
	}
	t.Run("Accept-Language", func(t *testing.T) {
		speaks(t, h.pub.Do(t, "GET", "/e/polyglot", nil, "Accept-Language", "de-AT,de;q=0.9,en;q=0.5"), "de", labels["de"].register)
		speaks(t, h.pub.Do(t, "GET", "/e/polyglot", nil, "Accept-Language", "uk"), "en", labels["en"].register)
	})
}

func TestControlCharactersInNamesAreRefused(t *testing.T) {
	h := newHarness(t)
	h.createEvent("controls")
	for name, c := range map[string]string{"U+2028": "\u2028", "NEL": "\u0085", "VT": "\v", "FF": "\f", "NUL": "\x00"} {
		t.Run(name, func(t *testing.T) {
			r := h.pub.Do(t, "POST", "/api/events/controls/registrations",
				regBody("Ada"+c+"Lovelace", "ada-"+strings.ToLower(name)+"@example.org", events.ModeOnline))
			if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `"field":"name"`) {
				t.Fatalf("API: %d %s, want 422 naming name", r.Status, r.Body)
			}
			form := url.Values{"name": {"Ada" + c + "Lovelace"}, "email": {"form-" + strings.ToLower(name) + "@example.org"},
				"mode": {"online"}, "consent": {"true"}}
			r = h.pub.Do(t, "POST", "/e/controls", []byte(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
			if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `id="name-err"`) {
				t.Fatalf("form: %d, want 422 with the name marked: %.400s", r.Status, r.Body)
			}
		})
	}
	testkit.WaitIdle(t, h.bus.JS, events.StreamRequests, deciderDurable)
	if n := len(requestsInStream(t, h.bus.JS)); n != 0 {
		t.Fatalf("%d invalid registrations reached the requests stream", n)
	}
}

// The per-address limit counts the address in the body, whatever the query
// string says.
func TestRateLimitPerAddressIgnoresQueryDecoys(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RatePerEmail = 2 })
	h.createEvent("decoys")
	form := url.Values{"name": {"Spam"}, "email": {"spam@example.org"}, "mode": {"online"}, "consent": {"true"}}.Encode()
	var statuses []int
	for i := range 3 {
		r := h.pub.Do(t, "POST", fmt.Sprintf("/e/decoys?email=decoy%d@example.org", i), []byte(form), "Content-Type", "application/x-www-form-urlencoded")
		statuses = append(statuses, r.Status)
	}
	if !slices.Equal(statuses, []int{303, 303, 429}) {
		t.Fatalf("form posts answered %v, want [303 303 429]", statuses)
	}
	statuses = nil
	for i := range 3 {
		r := h.pub.Do(t, "POST", fmt.Sprintf("/api/events/decoys/registrations?email=decoy%d@example.org", i),
			regBody("Spam", "Other.Spam@example.org", events.ModeOnline))
		statuses = append(statuses, r.Status)
	}
	if !slices.Equal(statuses, []int{202, 202, 429}) {
		t.Fatalf("API posts answered %v, want [202 202 429]", statuses)
	}
}

// Ada@Example.org and ada@example.org are one address; the stored address
// keeps its local part as typed.
func TestAddressCaseMakesNoNewRegistration(t *testing.T) {
	h := newHarness(t)
	ev := h.createEvent("cases")
	registerVia(t, h.pub, "cases", regBody("Ada", "Ada@Example.org", events.ModeOnline))
	first := h.waitPublished(events.RegistrationConfirmed, 1)[0]
	if !strings.HasPrefix(first.Email, "Ada@") || !strings.EqualFold(first.Email, "ada@example.org") {
		t.Fatalf("confirmed address %q, want the local part as typed", first.Email)
	}
	registerVia(t, h.pub, "cases", regBody("Ada", "ada@example.org", events.ModeInPerson))
	dup := h.waitPublished(events.RegistrationDuplicateAttempt, 1)[0]
	if dup.ID != first.ID {
		t.Fatalf("duplicate attempt about %s, want %s", dup.ID, first.ID)
	}
	testkit.WaitIdle(t, h.bus.JS, events.StreamRequests, deciderDurable)
	if n := len(h.published(events.RegistrationConfirmed)); n != 1 {
		t.Fatalf("%d confirmed for one address", n)
	}
	r := h.admin.Do(t, "GET", "/admin/events/"+ev.ID+"/registrations", nil)
	var list struct{ Items []Registration }
	r.JSON(t, &list)
	if len(list.Items) != 1 || !strings.HasPrefix(list.Items[0].Email, "Ada@") {
		t.Fatalf("stored %+v", list.Items)
	}
	if v := h.manage(token(first.ManageURL)); !strings.HasPrefix(v.Email, "Ada@") {
		t.Fatalf("manage view shows %q", v.Email)
	}
}

// The manage page's switch form is checked as the API's PATCH is: a mode
// that does not exist is refused and changes nothing. (Before the decider
// refused unknown modes, such a post from a confirmed or waitlisted
// registration made it panic: see TestDecideRefusesUnknownModes.)
func TestManagePageRefusesUnknownMode(t *testing.T) {
	h := newHarness(t)
	h.createEvent("switch-form", func(b map[string]any) { b["registration"] = map[string]any{"approval": "manual"} })
	h.createEvent("switch-form-auto")
	registerVia(t, h.pub, "switch-form", regBody("Pat", "pat@example.org", events.ModeInPerson))
	pending := token(h.outcome(events.RegistrationPending, "pat@example.org").ManageURL)
	registerVia(t, h.pub, "switch-form-auto", regBody("Cy", "cy@example.org", events.ModeInPerson))
	confirmed := token(h.outcome(events.RegistrationConfirmed, "cy@example.org").ManageURL)
	for name, tok := range map[string]string{"pending": pending, "confirmed": confirmed} {
		t.Run(name, func(t *testing.T) {
			form := url.Values{"action": {"switch"}, "mode": {"hologram"}, "lang": {"en"}}
			r := h.pub.Do(t, "POST", "/r/"+tok, []byte(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
			testkit.WaitIdle(t, h.bus.JS, events.StreamRequests, deciderDurable)
			if v := h.manage(tok); v.Mode != events.ModeInPerson || v.Status != name {
				t.Errorf("after switching to %q the registration is %s %q", "hologram", v.Status, v.Mode)
			}
			if r.Status != http.StatusUnprocessableEntity && r.Status != http.StatusBadRequest {
				t.Errorf("switch to %q: %d (Location %q), want 422 or 400", "hologram", r.Status, r.Header.Get("Location"))
			}
		})
	}
	// The decider is still deciding.
	registerVia(t, h.pub, "switch-form-auto", regBody("Dee", "dee@example.org", events.ModeInPerson))
	h.outcome(events.RegistrationConfirmed, "dee@example.org")
}

// A PATCH is applied whole or not at all (RFC 5789): when the mode asked
// for is full, the details sent with it stay as they were too.
func TestManagePatchIsAllOrNothing(t *testing.T) {
	h := newHarness(t)
	h.createEvent("atomic", func(b map[string]any) { b["capacity"] = map[string]any{"online": 1} })
	registerVia(t, h.pub, "atomic", regBody("Holder", "holder@example.org", events.ModeOnline))
	registerVia(t, h.pub, "atomic", regBody("Venue", "venue@example.org", events.ModeInPerson))
	tok := token(h.outcome(events.RegistrationConfirmed, "venue@example.org").ManageURL)
	r := h.pub.Do(t, "PATCH", "/api/manage/"+tok, map[string]any{"name": "Renamed", "mode": "online"})
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "full") {
		t.Fatalf("switch to the full online mode: %d %s, want 409 full", r.Status, r.Body)
	}
	if v := h.manage(tok); v.Name != "Venue" || v.Mode != events.ModeInPerson {
		t.Errorf("a refused PATCH was half applied: name %q, mode %s", v.Name, v.Mode)
	}
}

// The form's per-address budget is the address the form registers: a body
// that reads as JSON naming a decoy and as a form naming the address (sent
// with a content type other than the form's) does not dodge it.
func TestRateLimitPerAddressFollowsTheFormBody(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RatePerEmail = 2 })
	h.createEvent("polyglot-body")
	var statuses []int
	for i := range 3 {
		body := fmt.Sprintf(`{"email":"decoy%d@example.org","x":"&name=Spam&email=spam@example.org&mode=online&consent=true&y="}`, i)
		r := h.pub.Do(t, "POST", "/e/polyglot-body", []byte(body), "Content-Type", "text/plain")
		statuses = append(statuses, r.Status)
	}
	// The form takes only form bodies, and counts them by the address the
	// form names: each post is refused (415) or, past the budget, limited.
	for i, st := range statuses {
		if st == http.StatusSeeOther || (i == 2 && st != http.StatusTooManyRequests && st != http.StatusUnsupportedMediaType) {
			t.Errorf("three ambiguous posts for spam@example.org answered %v", statuses)
			break
		}
	}
	testkit.WaitIdle(t, h.bus.JS, events.StreamRequests, deciderDurable)
	if n := len(requestsInStream(t, h.bus.JS)); n > 2 {
		t.Errorf("%d registrations for one address got past a limit of 2 a minute", n)
	}
}
