package registration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

const adminToken = "test-admin-token"

type harness struct {
	t     *testing.T
	nats  *testkit.NATS
	bus   *bus.Bus
	cfg   Config
	admin testkit.Client
	pub   testkit.Client
	stop  func()
}

func newHarness(t *testing.T, tweak ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, nats: testkit.StartNATS(t)}
	h.cfg = Config{
		Common: service.Common{
			MongoURI:      testkit.MongoURI(t),
			MongoDatabase: testkit.DatabaseName(t),
			NATSURL:       h.nats.URL,
			ConnectWait:   5 * time.Second,
		},
		PublicURL:         "http://plenary.test",
		AdminTokens:       []string{adminToken},
		LinkKey:           strings.Repeat("k", 32),
		RatePerIP:         1000,
		RatePerEmail:      1000,
		OutboxInterval:    200 * time.Millisecond,
		RetentionInterval: time.Hour,
		ActionWait:        5 * time.Second,
		DeciderPinnedTTL:  2 * time.Second,
	}
	for _, f := range tweak {
		f(&h.cfg)
	}
	h.bus = h.nats.Bus(t)
	h.start()
	return h
}

// database connects to the service's own database, as a test that plays a
// crash needs to.
func (h *harness) database() *mongo.Database {
	h.t.Helper()
	db, err := store.Connect(context.Background(), h.cfg.MongoURI, h.cfg.MongoDatabase, 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { store.Disconnect(db) })
	return db
}

func (h *harness) start() {
	h.t.Helper()
	cfg := h.cfg
	var base string
	cfg.Listener, base = testkit.Listen(h.t)
	h.stop = testkit.Serve(h.t, func(ctx context.Context) error { return Run(ctx, cfg, testkit.Logger(h.t)) })
	h.admin = testkit.Client{Base: base, Token: adminToken}
	h.pub = testkit.Client{Base: base}
	testkit.Eventually(h.t, 10*time.Second, func() error {
		if r := h.pub.Do(h.t, "GET", "/readyz", nil); r.Status != 200 {
			return fmt.Errorf("readyz %d: %s", r.Status, r.Body)
		}
		return nil
	})
}

func eventBody(slug string, mutate ...func(map[string]any)) map[string]any {
	body := map[string]any{
		"slug":        slug,
		"title":       "Leveraging innovation and technology to address 21st century security challenges",
		"description": "OSCE roundtable with the Asian Partners for Co-operation.",
		"timezone":    "Europe/Vienna",
		"starts_at":   time.Now().Add(72 * time.Hour).Format(time.RFC3339),
		"ends_at":     time.Now().Add(96 * time.Hour).Format(time.RFC3339),
		"venue":       map[string]any{"name": "Hofburg", "address": "Heldenplatz, 1010 Vienna"},
		"online":      map[string]any{"join_url": "https://meet.example.org/osce", "opens_minutes_before": 15},
		"capacity":    map[string]any{"in_person": 0, "online": 0},
	}
	for _, m := range mutate {
		m(body)
	}
	return body
}

func (h *harness) createEvent(slug string, mutate ...func(map[string]any)) Event {
	h.t.Helper()
	return createEvent(h.t, h.admin, slug, mutate...)
}

// createEvent creates an event through admin, a service's organiser client.
func createEvent(t *testing.T, admin testkit.Client, slug string, mutate ...func(map[string]any)) Event {
	t.Helper()
	r := admin.Do(t, "POST", "/admin/events", eventBody(slug, mutate...))
	if r.Status != http.StatusCreated {
		t.Fatalf("create event: %d %s", r.Status, r.Body)
	}
	var ev Event
	r.JSON(t, &ev)
	return ev
}

// withSeats limits in-person seats to n, online unlimited, with a waitlist.
func withSeats(n int) func(map[string]any) {
	return func(b map[string]any) {
		b["capacity"] = map[string]any{"in_person": n, "online": 0}
		b["registration"] = map[string]any{"waitlist": true}
	}
}

func (h *harness) register(slug, email, mode string, headers ...string) testkit.Response {
	h.t.Helper()
	return h.pub.Do(h.t, "POST", "/api/events/"+slug+"/registrations", map[string]any{
		"name": "Alena Kupchyna", "email": email, "mode": mode, "consent": true, "timezone": "Asia/Tokyo",
	}, headers...)
}

// published returns the registration payloads published with type typ.
func (h *harness) published(typ string) []events.Registration {
	h.t.Helper()
	var out []events.Registration
	for _, env := range testkit.OfType(testkit.ReadStream(h.t, h.bus.JS, events.StreamRegistration), typ) {
		var p events.Registration
		if err := env.Decode(&p); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func (h *harness) waitPublished(typ string, n int) []events.Registration {
	h.t.Helper()
	var got []events.Registration
	testkit.Eventually(h.t, 10*time.Second, func() error {
		if got = h.published(typ); len(got) != n {
			return fmt.Errorf("%d %s events, want %d", len(got), typ, n)
		}
		return nil
	})
	return got
}

func TestCreateEventAnnouncesIt(t *testing.T) {
	h := newHarness(t)
	if r := h.pub.Do(t, "POST", "/admin/events", eventBody("no-token")); r.Status != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", r.Status)
	}
	ev := h.createEvent("osce-roundtable")
	if ev.ID == "" || ev.Version != 1 || ev.Registration.Approval != ApprovalAuto {
		t.Fatalf("created event %+v", ev)
	}

	envs := testkit.OfType(testkit.ReadStream(t, h.bus.JS, events.StreamRegistration), events.EventCreated)
	if len(envs) != 1 {
		t.Fatalf("%d event.created messages, want 1", len(envs))
	}
	var p events.Event
	if err := envs[0].Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.ID != ev.ID || p.Slug != "osce-roundtable" || p.Timezone != "Europe/Vienna" {
		t.Fatalf("announced %+v", p)
	}

	r := h.admin.Do(t, "POST", "/admin/events", eventBody("osce-roundtable"))
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "slug_taken") {
		t.Fatalf("same slug again: %d %s, want 409 slug_taken", r.Status, r.Body)
	}
	if r := h.admin.Do(t, "GET", "/admin/events/"+ev.ID, nil); r.Status != 200 {
		t.Fatalf("get event: %d", r.Status)
	}
	if r := h.pub.Do(t, "GET", "/api/events/osce-roundtable", nil); r.Status != 200 || strings.Contains(string(r.Body), "join_url") {
		t.Fatalf("public event: %d %s (must not reveal the meeting URL)", r.Status, r.Body)
	}
}

func TestCreateEventValidation(t *testing.T) {
	h := newHarness(t)
	cases := map[string]struct {
		mutate func(map[string]any)
		field  string
	}{
		"bad slug":      {func(b map[string]any) { b["slug"] = "Not A Slug" }, "slug"},
		"no title":      {func(b map[string]any) { b["title"] = "" }, "title"},
		"bad zone":      {func(b map[string]any) { b["timezone"] = "Mars/Olympus" }, "timezone"},
		"ends first":    {func(b map[string]any) { b["ends_at"] = time.Now().Format(time.RFC3339) }, "ends_at"},
		"bad approval":  {func(b map[string]any) { b["registration"] = map[string]any{"approval": "maybe"} }, "registration.approval"},
		"bad reminder":  {func(b map[string]any) { b["reminders"] = []string{"tomorrow"} }, "reminders"},
		"bad join url":  {func(b map[string]any) { b["online"] = map[string]any{"join_url": "javascript:alert(1)"} }, "online.join_url"},
		"title newline": {func(b map[string]any) { b["title"] = "a\r\nBcc: x@example.org" }, "title"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := h.admin.Do(t, "POST", "/admin/events", eventBody("valid-slug", tc.mutate))
			if r.Status != http.StatusUnprocessableEntity {
				t.Fatalf("%d %s, want 422", r.Status, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("content type %q", ct)
			}
			if !strings.Contains(string(r.Body), `"field":"`+tc.field+`"`) {
				t.Errorf("problem does not name field %s: %s", tc.field, r.Body)
			}
		})
	}
	if r := h.admin.Do(t, "POST", "/admin/events", []byte(`{"starts_at":"tomorrow"}`)); r.Status != http.StatusBadRequest {
		t.Fatalf("unparseable time: %d, want 400", r.Status)
	}
}

func TestRegisterConfirmsAndPublishesLinks(t *testing.T) {
	h := newHarness(t)
	ev := h.createEvent("roundtable")
	r := h.register("roundtable", "Participant@Example.org", events.ModeOnline)
	if r.Status != http.StatusAccepted || string(r.Body) != `{"status":"received"}` {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	got := h.waitPublished(events.RegistrationConfirmed, 1)[0]
	if got.EventID != ev.ID || got.Status != events.StatusConfirmed || got.Email != "Participant@example.org" || got.Version != 1 {
		t.Fatalf("published %+v", got)
	}
	if !strings.HasPrefix(got.ManageURL, "http://plenary.test/r/") || !strings.HasPrefix(got.JoinURL, "http://plenary.test/j/") {
		t.Fatalf("links %q %q", got.ManageURL, got.JoinURL)
	}
	if got.Event.Title != ev.Title || got.Event.Timezone != "Europe/Vienna" {
		t.Fatalf("event copy %+v", got.Event)
	}

	token := strings.TrimPrefix(got.ManageURL, "http://plenary.test/r/")
	view := h.pub.Do(t, "GET", "/api/manage/"+token, nil)
	if view.Status != 200 || !strings.Contains(string(view.Body), `"status":"confirmed"`) {
		t.Fatalf("manage view: %d %s", view.Status, view.Body)
	}
	if view.Header.Get("Referrer-Policy") != "no-referrer" || view.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("manage view headers: %v", view.Header)
	}
	page := h.pub.Do(t, "GET", "/r/"+token, nil)
	if page.Status != 200 || !strings.Contains(string(page.Body), "Alena Kupchyna") {
		t.Fatalf("manage page: %d %s", page.Status, page.Body)
	}
	for _, bad := range []string{token[:len(token)-2] + "xx", "nonsense", strings.Replace(token, ".1.", ".2.", 1)} {
		if r := h.pub.Do(t, "GET", "/api/manage/"+bad, nil); r.Status != http.StatusNotFound {
			t.Errorf("forged token: %d, want 404", r.Status)
		}
	}
}

func TestDuplicateRegistrationAnnouncesAttemptAndKeepsSeat(t *testing.T) {
	h := newHarness(t)
	ev := h.createEvent("small", func(b map[string]any) { b["capacity"] = map[string]any{"in_person": 2} })
	h.register("small", "a@example.org", events.ModeInPerson)
	r := h.register("small", "A@EXAMPLE.ORG", events.ModeInPerson)
	if r.Status != http.StatusAccepted || string(r.Body) != `{"status":"received"}` {
		t.Fatalf("duplicate must look like any registration: %d %s", r.Status, r.Body)
	}
	h.waitPublished(events.RegistrationConfirmed, 1)
	dup := h.waitPublished(events.RegistrationDuplicateAttempt, 1)[0]
	if dup.Email != "a@example.org" || dup.ManageURL == "" {
		t.Fatalf("duplicate attempt %+v", dup)
	}
	stats := h.admin.Do(t, "GET", "/admin/events/"+ev.ID+"/stats", nil)
	if !strings.Contains(string(stats.Body), `"in_person":1`) {
		t.Fatalf("the duplicate's seat was not given back: %s", stats.Body)
	}
}

func TestCapacityNeverOversells(t *testing.T) {
	h := newHarness(t)
	h.createEvent("rush", func(b map[string]any) {
		b["capacity"] = map[string]any{"in_person": 5}
		b["registration"] = map[string]any{"waitlist": true}
	})
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := map[string]any{"name": fmt.Sprintf("P %d", i), "email": fmt.Sprintf("p%d@example.org", i),
				"mode": events.ModeInPerson, "consent": true, "waitlist_ok": i%2 == 0}
			if r := h.pub.Do(t, "POST", "/api/events/rush/registrations", body); r.Status != http.StatusAccepted {
				t.Errorf("register %d: %d %s", i, r.Status, r.Body)
			}
		}()
	}
	wg.Wait()
	confirmed := h.waitPublished(events.RegistrationConfirmed, 5)
	testkit.Eventually(t, 10*time.Second, func() error {
		w, rej := len(h.published(events.RegistrationWaitlisted)), len(h.published(events.RegistrationRejected))
		if len(confirmed)+w+rej != n {
			return fmt.Errorf("confirmed %d + waitlisted %d + rejected %d != %d", len(confirmed), w, rej, n)
		}
		return nil
	})
	for _, p := range h.published(events.RegistrationRejected) {
		if p.Reason != "full" {
			t.Errorf("rejected with reason %q, want full", p.Reason)
		}
	}
}

func TestRegistrationErrors(t *testing.T) {
	h := newHarness(t)
	past := time.Now().Add(-time.Hour).Format(time.RFC3339)
	h.createEvent("open")
	h.createEvent("closed", func(b map[string]any) { b["registration"] = map[string]any{"closes_at": past} })

	cases := map[string]struct {
		slug   string
		body   any
		status int
		want   string
	}{
		"unknown event": {"nope", map[string]any{"name": "x", "email": "x@example.org", "mode": "online", "consent": true}, 404, "not_found"},
		"closed":        {"closed", map[string]any{"name": "x", "email": "x@example.org", "mode": "online", "consent": true}, 409, "registration_closed"},
		"no consent":    {"open", map[string]any{"name": "x", "email": "x@example.org", "mode": "online"}, 422, `"field":"consent"`},
		"bad email":     {"open", map[string]any{"name": "x", "email": "x@@example", "mode": "online", "consent": true}, 422, `"field":"email"`},
		"header inject": {"open", map[string]any{"name": "x\r\nBcc: y@example.org", "email": "x@example.org", "mode": "online", "consent": true}, 422, `"field":"name"`},
		"long name":     {"open", map[string]any{"name": strings.Repeat("n", 201), "email": "x@example.org", "mode": "online", "consent": true}, 422, `"field":"name"`},
		"bad mode":      {"open", map[string]any{"name": "x", "email": "x@example.org", "mode": "hologram", "consent": true}, 422, `"field":"mode"`},
		"bad zone":      {"open", map[string]any{"name": "x", "email": "x@example.org", "mode": "online", "consent": true, "timezone": "Nowhere"}, 422, `"field":"timezone"`},
		"not json":      {"open", []byte("{"), 400, "bad_request"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := h.pub.Do(t, "POST", "/api/events/"+tc.slug+"/registrations", tc.body)
			if r.Status != tc.status || !strings.Contains(string(r.Body), tc.want) {
				t.Fatalf("%d %s, want %d with %s", r.Status, r.Body, tc.status, tc.want)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		// Announced by its length and refused before it is read: a client
		// still writing the body may see the connection close instead of
		// the answer, so the body is left unsent here.
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.pub.Base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /api/events/open/registrations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 70<<10)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "request_entity_too_large") {
			t.Fatalf("%d %s, want 413", resp.StatusCode, body)
		}
	})
	if n := len(h.published(events.RegistrationConfirmed)); n != 0 {
		t.Fatalf("%d registrations confirmed from invalid requests", n)
	}
}

func TestIdempotencyKeyReplaysTheResponse(t *testing.T) {
	h := newHarness(t)
	h.createEvent("idem")
	for range 3 {
		if r := h.register("idem", "same@example.org", events.ModeOnline, "Idempotency-Key", "retry-1"); r.Status != http.StatusAccepted {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	h.waitPublished(events.RegistrationConfirmed, 1)
	if n := len(h.published(events.RegistrationDuplicateAttempt)); n != 0 {
		t.Fatalf("a retried request with the same key made %d duplicate attempts", n)
	}
}

func TestRateLimitPerAddress(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RatePerEmail = 2 })
	h.createEvent("limited")
	h.register("limited", "spam@example.org", events.ModeOnline)
	h.register("limited", "spam@example.org", events.ModeOnline)
	if r := h.register("limited", "spam@example.org", events.ModeOnline); r.Status != http.StatusTooManyRequests {
		t.Fatalf("third attempt: %d, want 429", r.Status)
	}
	if r := h.register("limited", "other@example.org", events.ModeOnline); r.Status != http.StatusAccepted {
		t.Fatalf("another address: %d, want 202", r.Status)
	}
}

// A registration is accepted only once NATS has stored it: while NATS is
// away the answer says to try again (nothing is half-accepted), and once it
// is back the same request goes through.
func TestRegistrationDuringNATSOutageAsksToRetry(t *testing.T) {
	h := newHarness(t)
	h.createEvent("outage")
	h.nats.Stop()
	r := h.register("outage", "late@example.org", events.ModeInPerson)
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "try again") {
		t.Fatalf("register during outage: %d %s, want 503", r.Status, r.Body)
	}
	h.nats.Restart(t)
	testkit.Eventually(t, 10*time.Second, func() error {
		if r := h.register("outage", "late@example.org", events.ModeInPerson); r.Status != http.StatusAccepted {
			return fmt.Errorf("register after the outage: %d %s", r.Status, r.Body)
		}
		return nil
	})
	got := h.waitPublished(events.RegistrationConfirmed, 1)
	if got[0].Email != "late@example.org" {
		t.Fatalf("published %+v", got[0])
	}
}

func TestConfigRequiresSecrets(t *testing.T) {
	for name, c := range map[string]Config{
		"no tokens": {AdminTokens: nil, LinkKey: strings.Repeat("k", 32), PublicURL: "http://x"},
		"short key": {AdminTokens: []string{"t"}, LinkKey: "short", PublicURL: "http://x"},
		"bad url":   {AdminTokens: []string{"t"}, LinkKey: strings.Repeat("k", 32), PublicURL: "x"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := c.validate(); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func mustSigner(t *testing.T, key string) *links.Signer {
	t.Helper()
	s, err := links.NewSigner([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Two clients choosing the same Idempotency-Key (a counter, say) must not
// receive each other's response: each registration is made.
func TestIdempotencyKeysOfDifferentRequestsDoNotCollide(t *testing.T) {
	h := newHarness(t)
	h.createEvent("keys")
	for _, who := range []string{"alice@example.org", "bob@example.org"} {
		if r := h.register("keys", who, events.ModeOnline, "Idempotency-Key", "1"); r.Status != http.StatusAccepted {
			t.Fatalf("%s: %d", who, r.Status)
		}
	}
	h.waitPublished(events.RegistrationConfirmed, 2)
	if r := h.register("keys", "carol@example.org", events.ModeOnline, "Idempotency-Key", strings.Repeat("k", 256)); r.Status != http.StatusBadRequest {
		t.Fatalf("an overlong key: %d, want 400", r.Status)
	}
}

// Behind a trusted proxy, the per-IP limit counts the client the proxy saw,
// whatever the client wrote into X-Forwarded-For.
func TestRateLimitPerIPCannotBeDodgedWithForwardedFor(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.RatePerIP = 2
		c.TrustedProxies = []string{"127.0.0.1"}
	})
	h.createEvent("ip-limit")
	statuses := []int{}
	for i := range 4 {
		// What a load balancer appending to the header would forward.
		xff := fmt.Sprintf("198.51.100.%d, 203.0.113.7", i)
		r := h.register("ip-limit", fmt.Sprintf("p%d@example.org", i), events.ModeOnline, "X-Forwarded-For", xff)
		statuses = append(statuses, r.Status)
	}
	if statuses[2] != http.StatusTooManyRequests || statuses[3] != http.StatusTooManyRequests {
		t.Fatalf("statuses %v: the spoofed left-most address dodged the limit", statuses)
	}
}
