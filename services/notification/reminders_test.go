package notification

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// cluster runs replicas of the notification service on the same NATS and
// the same database, with a scheduler that looks every 50ms, each of which
// can be stopped and started again. Its bus plays the registration and
// agenda services.
type cluster struct {
	*harness
	bases []string
	stops []func()
}

func startCluster(t *testing.T, replicas int, debounce time.Duration) *cluster {
	t.Helper()
	nats := testkit.StartNATS(t)
	h := &harness{t: t, cfg: testConfig(t, nats.URL)}
	h.cfg.PublicURL = "https://plenary.test"
	h.cfg.ReminderInterval, h.cfg.AgendaNoticeDebounce = 50*time.Millisecond, debounce
	h.bus = nats.Bus(t)
	c := &cluster{harness: h, bases: make([]string, replicas), stops: make([]func(), replicas)}
	for i := range replicas {
		c.up(i)
	}
	return c
}

// up starts replica i and waits until it answers.
func (c *cluster) up(i int) {
	c.t.Helper()
	ln, base := testkit.Listen(c.t)
	cfg := c.cfg
	cfg.Listener = ln
	c.stops[i] = testkit.Serve(c.t, func(ctx context.Context) error { return Run(ctx, cfg, testkit.Logger(c.t)) })
	c.bases[i] = base
	c.base = base
	testkit.Eventually(c.t, 10*time.Second, func() error {
		if status, _ := c.get("/healthz", ""); status != http.StatusOK {
			return fmt.Errorf("/healthz: %d", status)
		}
		return nil
	})
}

// down stops replica i.
func (c *cluster) down(i int) {
	c.stops[i]()
	c.stops[i], c.bases[i] = nil, ""
}

// metric reads a counter from replica i's /metrics; the name includes its
// labels as Prometheus writes them.
func (c *cluster) metric(i int, name string) float64 {
	c.t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(c.bases[i] + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	v, _ := testkit.Metric(body, name)
	return v
}

// quiet waits until every running replica has finished two more passes of
// its scheduler: whatever was due when it was called has been acted on.
func (c *cluster) quiet() {
	c.t.Helper()
	const loops = "notification_scheduler_loops_total"
	start := map[int]float64{}
	for i, base := range c.bases {
		if base != "" {
			start[i] = c.metric(i, loops)
		}
	}
	testkit.Eventually(c.t, 10*time.Second, func() error {
		for i, n := range start {
			if got := c.metric(i, loops); got < n+2 {
				return fmt.Errorf("replica %d: %v scheduler passes, want %v", i, got, n+2)
			}
		}
		return nil
	})
}

// kind returns the mail jobs of one kind on the MAIL stream.
func (c *cluster) kind(kind string) []events.MailJob {
	c.t.Helper()
	var out []events.MailJob
	for _, j := range c.jobs(events.StreamMail) {
		if j.Kind == kind {
			out = append(out, j)
		}
	}
	return out
}

// waitKind waits for n jobs of kind, lets the schedulers run on, and
// fails unless there are exactly n.
func (c *cluster) waitKind(kind string, n int) []events.MailJob {
	c.t.Helper()
	testkit.Eventually(c.t, 15*time.Second, func() error {
		if got := len(c.kind(kind)); got < n {
			return fmt.Errorf("%d %s jobs, want %d", got, kind, n)
		}
		return nil
	})
	c.settled()
	c.quiet()
	jobs := c.kind(kind)
	if len(jobs) != n {
		c.t.Fatalf("%d %s jobs, want %d: %v", len(jobs), kind, n, jobIDs(jobs))
	}
	return jobs
}

// publishEvent publishes an event version as the registration service does.
func (c *cluster) publishEvent(typ string, ev events.Event) {
	c.t.Helper()
	env, err := events.New("plenary/registration", typ, ev.ID, ev)
	if err != nil {
		c.t.Fatal(err)
	}
	c.publishEnvelope(env)
}

// register publishes confirmed registrations and waits until the service
// holds them.
func (c *cluster) register(regs ...events.Registration) {
	c.t.Helper()
	for _, r := range regs {
		c.publish(events.RegistrationConfirmed, r)
	}
	c.settled()
}

// conference is a one-day event in Vienna starting at start, with the
// reminders given.
func conference(id string, start time.Time, reminders ...string) events.Event {
	return events.Event{
		ID: id, Version: 1, Slug: "slug-" + id, Title: "Roundtable " + id, Timezone: "Europe/Vienna",
		StartsAt: start, EndsAt: start.Add(8 * time.Hour),
		Venue:   events.Venue{Name: "Palais Ferstel", Address: "Strauchgasse 4, 1010 Wien"},
		Locales: []string{"en"}, Reminders: reminders, PublicURL: "https://plenary.test/e/slug-" + id,
	}
}

// attendee is a confirmed registration for ev in mode.
func attendee(ev events.Event, id, mode string) events.Registration {
	return events.Registration{
		ID: id, Version: 1, EventID: ev.ID, Status: events.StatusConfirmed, Mode: mode,
		Name: "Person " + id, Email: id + "@example.org", Locale: "en", Timezone: "America/New_York",
		ManageURL: "https://plenary.test/r/manage-" + id, JoinURL: "https://plenary.test/j/join-" + id,
		Event: ev,
	}
}

// recipients lists the registrations the jobs go to, sorted.
func recipients(jobs []events.MailJob) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.RegistrationID)
	}
	slices.Sort(out)
	return out
}

// testNow is the tests' present, to the second (the replica keeps milliseconds).
func testNow() time.Time { return time.Now().Truncate(time.Second) }

func TestReminderSentOnceAcrossReplicas(t *testing.T) {
	c := startCluster(t, 2, time.Minute)
	start := testNow().Add(time.Hour)
	ev := conference("evt-two", start, "2h")
	var regs []events.Registration
	for i := range 6 {
		mode := events.ModeOnline
		if i%2 == 0 {
			mode = events.ModeInPerson
		}
		regs = append(regs, attendee(ev, fmt.Sprintf("two-%d", i), mode))
	}
	c.register(regs...)
	c.publishEvent(events.EventCreated, ev)

	jobs := c.waitKind(kindReminder, len(regs))
	seen := map[string]bool{}
	for _, j := range jobs {
		want := jobID(reminderKey(j.RegistrationID, 2*time.Hour, start))
		if j.ID != want || seen[j.ID] {
			t.Errorf("job %s (to %s), want one job %s", j.ID, j.RegistrationID, want)
		}
		seen[j.ID] = true
	}
	// Each email was claimed by exactly one replica.
	var queued float64
	for i := range c.bases {
		queued += c.metric(i, `notification_mail_jobs_total{kind="reminder",outcome="queued"}`)
	}
	if queued != float64(len(regs)) {
		t.Errorf("the replicas queued %v reminders between them, want %d", queued, len(regs))
	}
	n, err := c.db().Collection(roundsCollection).CountDocuments(context.Background(), bson.D{{Key: "_id", Value: roundID(ev.ID, 2*time.Hour, start)}})
	if err != nil || n != 1 {
		t.Errorf("round recorded %d times (err %v), want once", n, err)
	}
}

// A replica that finds a reminder claimed by another does not send its own:
// the other's job is the one on the stream, once.
func TestReminderClaimedByAnotherReplicaIsNotSentAgain(t *testing.T) {
	c := startCluster(t, 1, time.Minute)
	start := testNow().Add(time.Hour)
	ev := conference("evt-claimed", start, "2h")
	mine, theirs := attendee(ev, "claim-mine", events.ModeOnline), attendee(ev, "claim-theirs", events.ModeInPerson)
	c.register(mine, theirs)

	// The other replica's claim and job, as queue leaves them.
	other := emailRecord{
		ID: jobID(reminderKey(theirs.ID, 2*time.Hour, start)), EventID: ev.ID, RegistrationID: theirs.ID,
		Kind: kindReminder, To: theirs.Email, Subject: "claimed by the other replica", Text: "other\n",
		CreatedAt: time.Now().UTC(),
	}
	if _, err := c.db().Collection(emailsCollection).InsertOne(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	msg, err := jobMsg(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.bus.PublishBatch(context.Background(), []*nats.Msg{msg}); err != nil {
		t.Fatal(err)
	}

	c.publishEvent(events.EventCreated, ev)
	jobs := c.waitKind(kindReminder, 2)
	if got := recipients(jobs); !slices.Equal(got, []string{mine.ID, theirs.ID}) {
		t.Fatalf("reminders to %v, want %v", got, []string{mine.ID, theirs.ID})
	}
	for _, j := range jobs {
		if j.RegistrationID == theirs.ID && j.Subject != other.Subject {
			t.Errorf("the claimed reminder was sent again as %q", j.Subject)
		}
	}
}

func TestReminderNotSentAfterCancellationOrErasure(t *testing.T) {
	c := startCluster(t, 1, time.Minute)
	ev := conference("evt-gone", tomorrowMorning(), "48h")
	online, inPerson := attendee(ev, "gone-online", events.ModeOnline), attendee(ev, "gone-inperson", events.ModeInPerson)
	cancelled, erased := attendee(ev, "gone-cancelled", events.ModeOnline), attendee(ev, "gone-erased", events.ModeInPerson)
	erased.Name, erased.Email = "Ferdinand Erasmus-Vogt", "f.erasmus-vogt@example.org"
	c.register(online, inPerson, cancelled, erased)

	cancelled.Version, cancelled.Status = 2, events.StatusCancelled
	c.publish(events.RegistrationCancelled, cancelled)
	c.publish(events.RegistrationErased, events.Registration{ID: erased.ID, Version: 2, EventID: ev.ID})
	c.settled()
	rel := reminderRelease(ev)
	c.publishRelease(rel)
	testkit.Eventually(t, 10*time.Second, func() error {
		_, err := newReleaseReplica(c.db(), testkit.Logger(t)).release(context.Background(), ev.ID, 1)
		return err
	})
	c.publishEvent(events.EventCreated, ev)

	jobs := c.waitKind(kindReminder, 2)
	if got, want := recipients(jobs), []string{inPerson.ID, online.ID}; !slices.Equal(got, want) {
		t.Fatalf("reminders to %v, want %v", got, want)
	}
	for _, j := range jobs {
		switch j.RegistrationID {
		case online.ID:
			for _, want := range []string{online.JoinURL, sessionJoinURL(online.JoinURL, "s-web"), sessionJoinURL(online.JoinURL, "s-open")} {
				if !strings.Contains(j.Text, want) {
					t.Errorf("online reminder lacks %s:\n%s", want, j.Text)
				}
			}
			if strings.Contains(j.Text, "Data sovereignty") {
				t.Errorf("online reminder lists an in-person-only session:\n%s", j.Text)
			}
		case inPerson.ID:
			for _, want := range []string{ev.Venue.Name, "Opening panel", "Data sovereignty"} {
				if !strings.Contains(j.Text, want) {
					t.Errorf("in-person reminder lacks %q:\n%s", want, j.Text)
				}
			}
			for _, unwanted := range []string{"Day two keynote", "?session=", "join-"} {
				if strings.Contains(j.Text+j.HTML, unwanted) {
					t.Errorf("in-person reminder has %q:\n%s", unwanted, j.Text)
				}
			}
		}
		if strings.Contains(j.Text+j.HTML, "meet.plenary.test") {
			t.Errorf("reminder to %s shows a meeting URL", j.RegistrationID)
		}
	}
	noPersonalData(t, c.db(), erased.Name, erased.Email)
}

func TestReminderAfterDowntime(t *testing.T) {
	c := startCluster(t, 1, time.Minute)
	c.down(0)
	soon, started := testNow().Add(30*time.Minute), testNow().Add(-time.Minute)
	late := conference("evt-late", soon, "1h")                    // due 30 minutes ago, still before the start
	both := conference("evt-both", soon, "24h", "1h")             // both due: only the later one goes
	over := conference("evt-started", started, "1h")              // due, but it has started
	early := conference("evt-early", soon.Add(2*time.Hour), "1h") // not due yet
	regs := []events.Registration{
		attendee(late, "late-1", events.ModeOnline), attendee(both, "both-1", events.ModeInPerson),
		attendee(over, "started-1", events.ModeOnline), attendee(early, "early-1", events.ModeOnline),
	}
	for _, r := range regs {
		c.publish(events.RegistrationConfirmed, r)
	}
	for _, ev := range []events.Event{late, both, over, early} {
		c.publishEvent(events.EventCreated, ev)
	}

	c.up(0)
	jobs := c.waitKind(kindReminder, 2)
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	slices.Sort(ids)
	want := []string{jobID(reminderKey("both-1", time.Hour, soon)), jobID(reminderKey("late-1", time.Hour, soon))}
	if !slices.Equal(ids, want) {
		t.Errorf("reminders %v, want %v", ids, want)
	}
	var superseded roundRecord
	err := c.db().Collection(roundsCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: roundID(both.ID, 24*time.Hour, soon)}}).Decode(&superseded)
	if err != nil || !superseded.Superseded {
		t.Errorf("the 24h round of %s: %+v, %v; want it recorded as superseded", both.ID, superseded, err)
	}
}

func TestReminderRescheduledWhenTheStartChanges(t *testing.T) {
	c := startCluster(t, 1, time.Minute)
	first := testNow().Add(time.Hour)
	ev := conference("evt-moved", first, "2h")
	reg := attendee(ev, "moved-1", events.ModeOnline)
	c.register(reg)
	c.publishEvent(events.EventCreated, ev)
	c.waitKind(kindReminder, 1)

	// A new title alone changes nothing.
	ev.Version, ev.Title = 2, "Roundtable, renamed"
	c.publishEvent(events.EventUpdated, ev)
	c.settled()
	c.quiet()
	if jobs := c.kind(kindReminder); len(jobs) != 1 {
		t.Fatalf("%d reminders after a new title, want 1", len(jobs))
	}

	second := first.Add(30 * time.Minute)
	ev.Version, ev.StartsAt, ev.EndsAt = 3, second, second.Add(8*time.Hour)
	c.publishEvent(events.EventUpdated, ev)
	jobs := c.waitKind(kindReminder, 2)
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	want := []string{jobID(reminderKey(reg.ID, 2*time.Hour, first)), jobID(reminderKey(reg.ID, 2*time.Hour, second))}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("reminders %v, want %v", ids, want)
	}
}

// noPersonalData fails the test if any document of any collection of db
// holds one of the strings (case-insensitively), compressed email content
// included.
func noPersonalData(t *testing.T, db *mongo.Database, strs ...string) {
	t.Helper()
	ctx := context.Background()
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no collections to search")
	}
	for _, name := range names {
		cur, err := db.Collection(name).Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		for cur.Next(ctx) {
			doc := bytes.ToLower(cur.Current)
			// An email's content is stored compressed: search it too.
			if v, err := cur.Current.LookupErr("content"); err == nil {
				if _, z, ok := v.BinaryOK(); ok {
					raw, err := decompress(z)
					if err != nil {
						t.Fatalf("collection %s: content: %v", name, err)
					}
					doc = append(doc, bytes.ToLower(raw)...)
				}
			}
			for _, s := range strs {
				if bytes.Contains(doc, []byte(strings.ToLower(s))) {
					t.Errorf("collection %s still holds %q: %s", name, s, cur.Current)
				}
			}
		}
		if err := cur.Err(); err != nil {
			t.Fatal(err)
		}
		cur.Close(ctx)
	}
}

// tomorrowMorning is 09:00 in Vienna tomorrow: sessions from then to the
// evening are on one day there, whatever the time the test runs.
func tomorrowMorning() time.Time {
	loc, err := time.LoadLocation("Europe/Vienna")
	if err != nil {
		panic(err)
	}
	y, m, d := time.Now().In(loc).AddDate(0, 0, 1).Date()
	return time.Date(y, m, d, 9, 0, 0, 0, loc).UTC()
}

// reminderRelease is an agenda over two days: on the first, a hybrid
// opening, an in-person panel and an online workshop; on the second a
// keynote.
func reminderRelease(ev events.Event) events.Release {
	day := ev.StartsAt
	s := []events.Session{
		{ID: "s-open", Title: "Opening panel", StartsAt: day, EndsAt: day.Add(time.Hour), Room: "Festsaal",
			Format: events.FormatHybrid, JoinURL: "https://meet.plenary.test/open", Sequence: 1},
		{ID: "s-data", Title: "Data sovereignty", StartsAt: day.Add(90 * time.Minute), EndsAt: day.Add(150 * time.Minute),
			Room: "Salon", Format: events.FormatInPerson, Sequence: 1},
		{ID: "s-web", Title: "Remote workshop", StartsAt: day.Add(3 * time.Hour), EndsAt: day.Add(4 * time.Hour),
			Format: events.FormatOnline, JoinURL: "https://meet.plenary.test/web", Sequence: 1},
		{ID: "s-day2", Title: "Day two keynote", StartsAt: day.Add(24 * time.Hour), EndsAt: day.Add(25 * time.Hour),
			Room: "Festsaal", Format: events.FormatInPerson, Sequence: 1},
	}
	return events.Release{
		EventID: ev.ID, Slug: ev.Slug, Title: ev.Title, Timezone: ev.Timezone, Version: 1,
		PublishedAt: time.Now().UTC().Truncate(time.Second), Sessions: s, Changes: events.Diff(nil, s),
	}
}

// publishRelease publishes an agenda release as the agenda service does.
func (c *cluster) publishRelease(rel events.Release) {
	c.t.Helper()
	env, err := events.New("plenary/agenda", events.AgendaReleasePublished, rel.EventID, rel)
	if err != nil {
		c.t.Fatal(err)
	}
	c.publishEnvelope(env)
}
