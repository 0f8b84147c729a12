package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
)

var (
	benchFanout = flag.Int("bench-fanout", 0,
		"participants told of one agenda change in --bench (0: 20,000, or twice --bench when that is under 10,000, at least 2,000)")
	benchFanoutProfile = flag.String("bench-fanout-cpuprofile", "",
		"write a CPU profile of the fan-out alone (agenda release to last email) to this file")
)

// The fan-out runs with its own settings of the stack, as an organiser
// sending to a big event would (issue #7: 10 connections), and with a
// short debounce so that the bench does not wait ten minutes.
const (
	fanoutWorkers  = 10
	fanoutDebounce = time.Second
	fanoutTick     = 250 * time.Millisecond
	// listmonkFanout is the fan-out target: listmonk's 20,002
	// personalised emails in 3.13 s on this kind of machine.
	listmonkFanout = 3130 * time.Millisecond
	// fanoutFirstWait bounds the wait for the next agenda-change email.
	fanoutFirstWait = 3 * time.Minute
)

// fanoutLocales are the languages the participants read their emails in.
var fanoutLocales = []string{"en", "fr", "de", "it", "ru", "es"}

// fanoutZones are the time zones of the online participants ("" for none
// given): their emails show the times in the event's zone and in theirs.
var fanoutZones = []string{"", "America/New_York", "Asia/Tokyo", "Europe/London"}

// fanoutResult is one agenda change told to every confirmed participant.
type fanoutResult struct {
	participants int
	workers      int

	confirmations   span          // the first email to each participant
	toConfirmations time.Duration // registrations published → last confirmation
	confirmExtra    int           // emails beyond one each before the change

	emails         span // the agenda-change email to each participant
	extra          int  // emails beyond two each (confirmation and change)
	releaseToLast  time.Duration
	releaseToFirst time.Duration
	jobs           span          // the jobs notification put on MAIL for the change
	cpu            float64       // CPU seconds of the process, release → last email
	writes         mailWrites    // the mailer's counters over the change
	dials          float64       // SMTP connections its mailer opened, confirmations included
	bare           float64       // mailer.BareSendRate of the same jobs over as many connections
	replicaRead    time.Duration // the notice's first query, read again afterwards (see readReplica)
	replicaDocs    int
	kind           string // the kind of job the bare measure copied
}

// fanoutSize is how many participants the fan-out tells.
func (b *bench) fanoutSize() int {
	if *benchFanout > 0 {
		return *benchFanout
	}
	return min(20000, max(minDrain, 2*b.n))
}

// fanOut measures one agenda change reaching every confirmed participant
// of an event. Registering that many through the registration service
// would take minutes, so the bench publishes their confirmations on
// REGISTRATION as the decider does (atomic batches of envelopes), which
// builds notification's replica of them and sends each a confirmation.
// Once those are all at the sink and the mailer is idle, the organiser
// moves a session that everyone attends and publishes the agenda: the
// measure is the agenda-change emails at the sink, first to last.
func (b *bench) fanOut(ctx context.Context, s *Stack, pub *bus.Bus) (fanoutResult, error) {
	n := b.fanoutSize()
	res := fanoutResult{participants: n, workers: fanoutWorkers}
	restore := setEnv(map[string]string{
		"MAILER_WORKERS":         strconv.Itoa(fanoutWorkers),
		"AGENDA_NOTICE_DEBOUNCE": fanoutDebounce.String(),
		"REMINDER_INTERVAL":      fanoutTick.String(),
	})
	// Only the restarts below read them: the two services keep these
	// settings for the rest of the run, in which no email is sent.
	defer restore()
	if err := waitMailBacklog(ctx, pub.JS, 0); err != nil {
		return res, err
	}
	for _, name := range []string{Notification, Mailer} {
		if err := restart(ctx, s, name); err != nil {
			return res, err
		}
	}

	ev, sessionID, err := b.fanoutEvent(ctx, s, pub.JS)
	if err != nil {
		return res, err
	}
	want, err := b.confirmEveryone(ctx, s, pub, ev, n, &res)
	if err != nil {
		return res, err
	}
	if err := waitMailBacklog(ctx, pub.JS, 0); err != nil {
		return res, err
	}
	before, err := mailerCounters(ctx, s)
	if err != nil {
		return res, err
	}

	stopProfile := startPartProfile(b, "fan-out", *benchFanoutProfile)
	used, changed := readUsage(), time.Now()
	released, err := b.moveSession(ctx, s, ev, sessionID)
	if err != nil {
		stopProfile()
		return res, err
	}
	for addr := range want {
		want[addr] = 2 // the confirmation, then the change
	}
	// Before its first email, the notice reads every participant from
	// FerretDB, which scans: give it longer than a stall elsewhere.
	arrived := b.track(want)
	waitStalling(ctx, fanoutFirstWait, func() (int, int) { return arrived() - n, n })
	res.cpu = readUsage().cpu - used.cpu
	stopProfile()
	res.emails, res.extra = b.nthArrivals(want, 1)
	res.releaseToLast = sinceIfAfter(res.emails.last, released)
	res.releaseToFirst = sinceIfAfter(res.emails.first, released)

	if err := waitMailBacklog(ctx, pub.JS, 0); err != nil {
		return res, err
	}
	after, err := mailerCounters(ctx, s)
	if err != nil {
		return res, err
	}
	res.writes, res.dials = after.minus(before), after.dials
	tmpl, jobs, err := changeJobs(ctx, pub.JS, changed)
	if err != nil {
		return res, fmt.Errorf("agenda-change jobs: %w", err)
	}
	res.jobs, res.kind = jobs, tmpl.Kind
	res.replicaRead, res.replicaDocs = b.readReplica(ctx, ev.ID)
	if res.emails.n < n {
		// The checks fail; a bare measure now could race emails still on
		// their way.
		b.log.Error("fan-out incomplete: no bare go-mail measure", "emails", res.emails.n, "participants", n)
		return res, nil
	}
	res.bare, err = b.bareFanout(ctx, tmpl, n)
	return res, err
}

// confirmEveryone publishes n confirmed registrations for ev and waits for
// their confirmations at the sink. It returns the participants' addresses.
func (b *bench) confirmEveryone(ctx context.Context, s *Stack, pub *bus.Bus, ev events.Event, n int, res *fanoutResult) (map[string]int, error) {
	want := make(map[string]int, n)
	msgs := make([]*nats.Msg, 0, n)
	for i := range n {
		reg := fanoutRegistration(s.URL, ev, i)
		env, err := events.NewWithID(reg.ID+"-1", "plenary/registration", events.RegistrationConfirmed, reg.ID, reg)
		if err != nil {
			return nil, err
		}
		m, err := bus.EnvelopeMsg(env)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
		want[reg.Email] = 1
	}
	arrived := b.track(want)
	published := time.Now()
	if err := pub.PublishBatch(ctx, msgs); err != nil {
		return nil, fmt.Errorf("publish the confirmations: %w", err)
	}
	waitFor(ctx, func() (int, int) { return arrived(), n })
	res.confirmations, res.confirmExtra = b.nthArrivals(want, 0)
	res.toConfirmations = sinceIfAfter(res.confirmations.last, published)
	fmt.Fprintf(b.out, "  fan-out: %d of %d participants confirmed (emails at the sink)\n", res.confirmations.n, n)
	if res.confirmations.n != n {
		return nil, fmt.Errorf("fan-out: %d of %d confirmation emails arrived", res.confirmations.n, n)
	}
	return want, nil
}

// fanoutRegistration is participant i, confirmed: one in ten in person,
// languages and zones mixed.
func fanoutRegistration(public string, ev events.Event, i int) events.Registration {
	id := events.NewID()
	reg := events.Registration{
		ID: id, Version: 1, EventID: ev.ID, Status: events.StatusConfirmed, Mode: modeOf(i),
		Name: fmt.Sprintf("Participant %d", i), Email: fmt.Sprintf("fanout-%d@example.org", i),
		Locale: fanoutLocales[i%len(fanoutLocales)], ManageURL: public + "/r/bench-" + id, Event: ev,
	}
	if reg.Mode == events.ModeOnline {
		reg.Timezone = fanoutZones[i%len(fanoutZones)]
		reg.JoinURL = public + "/j/bench-" + id
	}
	return reg
}
