package main

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
)

// outcome is a registration decision as it appeared on NATS.
type outcome struct {
	subject string
	status  string
	mode    string
	at      time.Time
}

// isOutcome reports whether subject is one of the decisions a registration
// request ends in: every accepted request must get exactly one.
func isOutcome(subject string) bool {
	switch subject {
	case events.RegistrationConfirmed, events.RegistrationWaitlisted, events.RegistrationPending,
		events.RegistrationRejected, events.RegistrationDuplicateAttempt:
		return true
	}
	return false
}

// watcher collects the decisions published on registration.v1.registration.>
// by address, and keeps one real mail job as the mailer drain's template.
// It uses core NATS subscriptions, which see every publish as it happens;
// a replayed publish carries the same CloudEvents id and is counted once.
// Core NATS also sees messages the stream then refuses (an atomic batch
// rejected or never committed), so storedOutcomes checks the count at the
// end against the stream.
type watcher struct {
	nc *nats.Conn

	mu       sync.Mutex
	byEmail  map[string][]outcome
	seen     map[string]bool // envelope ids
	replays  int             // outcomes seen again with an id already seen
	garbled  int             // outcome messages that did not decode
	template *events.MailJob
}

// watch subscribes before anything is sent, so that no decision is missed.
func watch(natsURL string) (*watcher, error) {
	nc, err := nats.Connect(natsURL, bus.InProcessOptions(natsURL)...)
	if err != nil {
		return nil, err
	}
	w := &watcher{nc: nc, byEmail: map[string][]outcome{}, seen: map[string]bool{}}
	sub, err := nc.Subscribe(events.AllRegistrations, w.onRegistration)
	if err != nil {
		nc.Close()
		return nil, err
	}
	// A slow consumer drops messages; a dropped decision would count as lost.
	_ = sub.SetPendingLimits(-1, -1)
	if _, err := nc.Subscribe(events.MailSend, w.onMailJob); err != nil {
		nc.Close()
		return nil, err
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	return w, nil
}

func (w *watcher) close() { w.nc.Close() }

func (w *watcher) onRegistration(m *nats.Msg) {
	if !isOutcome(m.Subject) {
		return
	}
	at := time.Now()
	var o outcomeMsg
	err := json.Unmarshal(m.Data, &o)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err != nil || o.SpecVersion != events.SpecVersion || o.ID == "" || o.Type != m.Subject:
		w.garbled++
	case w.seen[o.ID]:
		w.replays++
	default:
		w.seen[o.ID] = true
		w.byEmail[o.Data.Email] = append(w.byEmail[o.Data.Email], outcome{subject: m.Subject, status: o.Data.Status, mode: o.Data.Mode, at: at})
	}
}

// outcomeMsg is what the watcher reads of an outcome event: its envelope's
// id and the three fields it counts, in one pass over the message rather
// than events.Parse's and Decode's two over a whole registration (the
// bench's own work shares the two cores with what it measures).
type outcomeMsg struct {
	SpecVersion string `json:"specversion"`
	ID          string `json:"id"`
	Type        string `json:"type"`
	Data        struct {
		Email  string `json:"email"`
		Status string `json:"status"`
		Mode   string `json:"mode"`
	} `json:"data"`
}

// onMailJob keeps the first confirmation email's job: the drain sends
// copies of it, so that it measures the mailer with real emails.
func (w *watcher) onMailJob(m *nats.Msg) {
	var job events.MailJob
	env, err := events.Parse(m.Data)
	if err != nil || env.Decode(&job) != nil || job.Kind != "confirmation" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.template == nil {
		w.template = &job
		_ = m.Sub.Unsubscribe()
	}
}

// mailTemplate returns the kept mail job, or a plain one if none was seen.
func (w *watcher) mailTemplate() events.MailJob {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.template != nil {
		return *w.template
	}
	return events.MailJob{Kind: "bench", Subject: "Bench", Text: "A bench email.\n"}
}

// outcomes returns the decisions seen for email, in arrival order.
func (w *watcher) outcomes(email string) []outcome {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]outcome(nil), w.byEmail[email]...)
}

// decided counts, over the addresses in want (address → accepted requests),
// the decisions seen, at most as many per address as were wanted.
func (w *watcher) decided(want map[string]int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := 0
	for email, n := range want {
		got += min(n, len(w.byEmail[email]))
	}
	return got
}

// anomalies returns the replayed and garbled outcome messages seen so far.
func (w *watcher) anomalies() (replays, garbled int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.replays, w.garbled
}

// seenOutcomes returns how many distinct outcome messages were seen.
func (w *watcher) seenOutcomes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// storedOutcomes counts the outcome messages stored in the stream that
// holds the outcome subjects, whatever it is named.
func (w *watcher) storedOutcomes(ctx context.Context) (int, error) {
	js, err := jetstream.New(w.nc)
	if err != nil {
		return 0, err
	}
	name, err := js.StreamNameBySubject(ctx, events.RegistrationConfirmed)
	if err != nil {
		return 0, err
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(events.AllRegistrations))
	if err != nil {
		return 0, err
	}
	n := 0
	for subject, count := range info.State.Subjects {
		if isOutcome(subject) {
			n += int(count)
		}
	}
	return n, nil
}
