package main

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type e2e struct {
	t     *testing.T
	nats  *testkit.NATS
	smtp  *testkit.SMTPSink
	stack *Stack
	admin testkit.Client
	pub   testkit.Client
}

// startStack runs all four services, as make run does, against test
// infrastructure: embedded NATS and FerretDB and the SMTP sink.
func startStack(t *testing.T) *e2e {
	t.Helper()
	e := &e2e{t: t, nats: testkit.StartNATS(t), smtp: testkit.StartSMTP(t)}
	prefix := testkit.DatabaseName(t)
	for _, name := range serviceNames {
		testkit.DropOnCleanup(t, prefix+"_"+name)
	}
	started := make(chan *Stack, 1)
	opts := Options{
		DataDir:        t.TempDir(),
		Addr:           "127.0.0.1:0",
		NATSURL:        e.nats.URL,
		MongoURI:       testkit.MongoURI(t),
		SMTPAddr:       e.smtp.Addr,
		DatabasePrefix: prefix,
		Log:            testkit.Logger(t),
		Started:        func(s *Stack) { started <- s },
	}
	testkit.Serve(t, func(ctx context.Context) error { return Run(ctx, opts) })
	select {
	case e.stack = <-started:
	case <-time.After(60 * time.Second):
		t.Fatal("stack did not start within 60s")
	}
	e.admin = testkit.Client{Base: e.stack.URL, Token: e.stack.AdminToken}
	e.pub = testkit.Client{Base: e.stack.URL}
	return e
}

func (e *e2e) createEvent(slug string) string {
	e.t.Helper()
	return e.postEvent(map[string]any{
		"slug": slug, "title": "OSCE roundtable", "timezone": "Europe/Vienna",
		"starts_at": time.Now().Add(48 * time.Hour).Format(time.RFC3339),
		"ends_at":   time.Now().Add(72 * time.Hour).Format(time.RFC3339),
		"venue":     map[string]any{"name": "Hofburg"},
		"online":    map[string]any{"join_url": "https://meet.example.org/osce"},
		"capacity":  map[string]any{"in_person": 50, "online": 150},
	})
}

// postEvent creates the event body describes and returns its id.
func (e *e2e) postEvent(body map[string]any) string {
	e.t.Helper()
	r := e.admin.Do(e.t, "POST", "/admin/events", body)
	if r.Status != http.StatusCreated {
		e.t.Fatalf("create event: %d %s", r.Status, r.Body)
	}
	var ev struct{ ID string }
	r.JSON(e.t, &ev)
	return ev.ID
}

func (e *e2e) register(slug, email, mode string, headers ...string) {
	e.t.Helper()
	r := e.pub.Do(e.t, "POST", "/api/events/"+slug+"/registrations", map[string]any{
		"name": "Participant " + email, "email": email, "mode": mode, "consent": true,
	}, headers...)
	if r.Status != http.StatusAccepted {
		e.t.Fatalf("register %s: %d %s", email, r.Status, r.Body)
	}
}

// emailLog returns the notification service's log: recipient and status
// of every email, one entry per email.
func (e *e2e) emailLog(eventID string) [][2]string {
	e.t.Helper()
	r := e.admin.Do(e.t, "GET", "/admin/events/"+eventID+"/emails", nil)
	if r.Status != http.StatusOK {
		return nil
	}
	var body struct {
		Items []struct{ To, Status string }
	}
	r.JSON(e.t, &body)
	var out [][2]string
	for _, it := range body.Items {
		out = append(out, [2]string{it.To, it.Status})
	}
	return out
}

// waitEmailLog waits until the log holds exactly n emails, all in status.
func (e *e2e) waitEmailLog(eventID string, n int, status string) {
	e.t.Helper()
	testkit.Eventually(e.t, 20*time.Second, func() error {
		log := e.emailLog(eventID)
		count := 0
		for _, it := range log {
			if it[1] == status {
				count++
			}
		}
		if count != n || len(log) != n {
			return fmt.Errorf("email log %v: want %d emails, all %s", log, n, status)
		}
		return nil
	})
}

// settle waits until notification and the mailer have handled everything on
// the bus, so that counting emails after it would see a late duplicate.
func (e *e2e) settle() {
	e.t.Helper()
	nc, err := nats.Connect(e.nats.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	testkit.WaitIdle(e.t, js, events.StreamRegistration, "notification")
	testkit.WaitIdle(e.t, js, events.StreamMail, "mailer")
	testkit.WaitIdle(e.t, js, events.StreamMailStatus, "notification-status")
}

// exactlyOneEach settles, then checks that each address got exactly one
// email and nobody else got any.
func (e *e2e) exactlyOneEach(addrs ...string) {
	e.t.Helper()
	e.settle()
	got := map[string]int{}
	for _, m := range e.smtp.Messages(e.t) {
		got[m.Envelope.To[0]]++
	}
	for _, a := range addrs {
		if got[a] != 1 {
			e.t.Errorf("%s got %d emails, want exactly 1", a, got[a])
		}
		delete(got, a)
	}
	if len(got) != 0 {
		e.t.Errorf("unexpected emails: %v", got)
	}
}

var manageLink = regexp.MustCompile(`https?://[^\s"<>]+/r/[A-Za-z0-9._-]+`)

func TestRegistrationSendsExactlyOneConfirmationWithWorkingManageLink(t *testing.T) {
	e := startStack(t)
	eventID := e.createEvent("roundtable")
	trace := events.NewTraceParent()
	e.register("roundtable", "ada@example.org", "online", events.TraceHeader, trace)

	msgs := e.smtp.WaitFor(t, 1, 20*time.Second)
	m := msgs[0]
	if !strings.Contains(m.To, "ada@example.org") || !strings.Contains(m.Subject, "OSCE roundtable") {
		t.Fatalf("email to %q, subject %q", m.To, m.Subject)
	}
	link := manageLink.FindString(m.Text)
	if link == "" {
		t.Fatalf("no manage link in the text part:\n%s", m.Text)
	}
	if !strings.Contains(m.HTML, link) {
		t.Errorf("the HTML part lacks the manage link %s", link)
	}
	if !strings.Contains(m.Text, "/j/") {
		t.Errorf("an online registration's confirmation lacks the join link")
	}
	page := e.pub.Do(t, "GET", strings.TrimPrefix(link, e.stack.URL), nil)
	if page.Status != http.StatusOK || !strings.Contains(string(page.Body), "Participant ada@example.org") {
		t.Fatalf("manage link %s: %d %s", link, page.Status, page.Body)
	}
	e.waitEmailLog(eventID, 1, "sent")

	// The agenda service learnt the event from the bus.
	testkit.Eventually(t, 10*time.Second, func() error {
		if r := e.admin.Do(t, "GET", "/admin/events/"+eventID+"/agenda/draft", nil); r.Status != http.StatusOK {
			return fmt.Errorf("agenda draft: %d %s", r.Status, r.Body)
		}
		return nil
	})
	// The request's trace runs through the registration, the mail job and
	// its status, in the envelope and in the NATS header.
	nc, err := nats.Connect(e.nats.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ stream, typ string }{
		{events.StreamRegistration, events.RegistrationConfirmed},
		{events.StreamMailStatus, events.MailStatusSent}, // MAIL is a work queue: the job is gone once sent
	} {
		envs := testkit.OfType(testkit.ReadStream(t, js, want.stream), want.typ)
		if len(envs) != 1 || events.TraceID(envs[0].TraceParent) != events.TraceID(trace) {
			t.Errorf("%s: %d %s messages, trace %v; want 1 in trace %s", want.stream, len(envs), want.typ, envs, events.TraceID(trace))
		}
	}

	// Nothing else went out, not even late.
	e.exactlyOneEach("ada@example.org")
}

func TestMailerStoppedWhileJobsQueuedLosesAndDuplicatesNothing(t *testing.T) {
	e := startStack(t)
	eventID := e.createEvent("queued")
	if err := e.stack.Stop(Mailer); err != nil {
		t.Fatal(err)
	}
	const n = 6
	for i := range n {
		e.register("queued", fmt.Sprintf("p%d@example.org", i), "in_person")
	}
	// The jobs are rendered and queued while the mailer is away.
	e.waitEmailLog(eventID, n, "queued")
	if got := len(e.smtp.Messages(t)); got != 0 {
		t.Fatalf("%d emails sent with the mailer stopped", got)
	}

	if err := e.stack.Start(Mailer); err != nil {
		t.Fatal(err)
	}
	e.smtp.WaitFor(t, n, 30*time.Second)
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("p%d@example.org", i))
	}
	e.exactlyOneEach(want...)
	e.waitEmailLog(eventID, n, "sent")
}

func TestOutagesOfNotificationAndNATSLoseNothing(t *testing.T) {
	e := startStack(t)
	eventID := e.createEvent("outages")

	if err := e.stack.Stop(Notification); err != nil {
		t.Fatal(err)
	}
	e.register("outages", "during-notification-outage@example.org", "online")

	// While NATS is away a registration cannot be accepted (it is accepted
	// once NATS stores it): the answer says to retry, and the retry after
	// NATS is back goes through, once.
	e.nats.Stop()
	r := e.pub.Do(t, "POST", "/api/events/outages/registrations", map[string]any{
		"name": "Late", "email": "during-nats-outage@example.org", "mode": "in_person", "consent": true,
	}, "Idempotency-Key", "retry-1")
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("register during the NATS outage: %d %s, want 503", r.Status, r.Body)
	}
	e.nats.Restart(t)
	// Retry as a client would, a few times a second (not faster: the
	// per-IP rate limit would rightly refuse).
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		r := e.pub.Do(t, "POST", "/api/events/outages/registrations", map[string]any{
			"name": "Late", "email": "during-nats-outage@example.org", "mode": "in_person", "consent": true,
		}, "Idempotency-Key", "retry-1")
		if r.Status == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry after the outage: %d %s", r.Status, r.Body)
		}
	}

	if err := e.stack.Start(Notification); err != nil {
		t.Fatal(err)
	}
	e.smtp.WaitFor(t, 2, 45*time.Second)
	e.exactlyOneEach("during-notification-outage@example.org", "during-nats-outage@example.org")
	e.waitEmailLog(eventID, 2, "sent")
}

func TestRoutes(t *testing.T) {
	cases := map[string]string{
		"/admin/events":                       Registration,
		"/admin/events/x":                     Registration,
		"/admin/events/x/registrations":       Registration,
		"/admin/events/x/sessions":            Agenda,
		"/admin/events/x/sessions/y":          Agenda,
		"/admin/events/x/agenda/draft":        Agenda,
		"/admin/events/x/agenda/releases":     Agenda,
		"/api/events/s/agenda":                Agenda,
		"/api/events/s/agenda.ics":            Agenda,
		"/e/s/agenda":                         Agenda,
		"/e/s":                                Registration,
		"/admin/events/x/emails":              Notification,
		"/admin/events/x/announcements":       Notification,
		"/admin/emails/id/resend":             Notification,
		"/admin/events/x/dead-letters/replay": Notification,
		"/u/token":                            Notification,
		"/api/events/s/registrations":         Registration,
		"/r/token":                            Registration,
		"/j/token":                            Registration,
	}
	for path, want := range cases {
		if got := route(path); got != want {
			t.Errorf("route(%q) = %s, want %s", path, got, want)
		}
	}
}

// An organizer's edit reaches the agenda service's replica through the bus.
func TestEventEditReachesTheAgenda(t *testing.T) {
	e := startStack(t)
	eventID := e.createEvent("edited")
	if r := e.admin.Do(t, "PATCH", "/admin/events/"+eventID, map[string]any{"title": "Moved to the Redoutensaal"}); r.Status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		r := e.admin.Do(t, "GET", "/admin/events/"+eventID+"/agenda/draft", nil)
		if !strings.Contains(string(r.Body), "Moved to the Redoutensaal") || !strings.Contains(string(r.Body), `"version":2`) {
			return fmt.Errorf("agenda draft %d %s", r.Status, r.Body)
		}
		return nil
	})
}
