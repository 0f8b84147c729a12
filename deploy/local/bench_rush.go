package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

// request is one registration request and what became of it over HTTP.
type request struct {
	email, mode string
	dup         bool // a second submission of an address already accepted
	sentAt      time.Time
	took        time.Duration
	status      int // 0 when the request failed without an answer
}

func (r request) accepted() bool { return r.status == http.StatusAccepted }

// modeOf says how request i attends: one in ten in person, the rest online.
func modeOf(i int) string {
	if i%10 == 3 {
		return events.ModeInPerson
	}
	return events.ModeOnline
}

// planRush says who registers in request i of the rush. One request in
// fifty resubmits the address of the request 25 before it (dupOf its
// index; -1 for a first submission), as people do who press the button
// twice. Each address is resubmitted at most once: the notification service
// sends at most one "already registered" email per registration in ten
// minutes, so a second resubmission would make no email.
func planRush(slug string, i int) (email, mode string, dupOf int) {
	dupOf = -1
	if i%50 == 49 {
		dupOf, i = i-25, i-25
	}
	return fmt.Sprintf("%s-%d@example.org", slug, i), modeOf(i), dupOf
}

func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns},
	}
}

// postRegistration posts one registration and returns the HTTP status.
func postRegistration(client *http.Client, url, email, mode string) (int, error) {
	raw, _ := json.Marshal(map[string]any{
		"name": "Participant " + strings.TrimSuffix(email, "@example.org"), "email": email,
		"mode": mode, "consent": true, "waitlist_ok": true,
	})
	resp, err := client.Post(url, "application/json", bytes.NewReader(raw))
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// rush sends b.n registrations for the event at slug from b.workers clients
// as fast as they are answered, then waits for every decision on NATS and,
// with emails, every email at the sink.
func (b *bench) rush(ctx context.Context, s *Stack, w *watcher, slug string, emails bool) rushResult {
	reqs := make([]request, b.n)
	answered := make([]chan struct{}, b.n)
	for i := range answered {
		answered[i] = make(chan struct{})
	}
	client := newHTTPClient(b.workers)
	url := s.URL + "/api/events/" + slug + "/registrations"
	_, _ = parallel(b.n, b.workers, func(i int) error {
		defer close(answered[i])
		email, mode, dupOf := planRush(slug, i)
		if dupOf >= 0 {
			// A resubmission follows the first one's answer, so that the
			// first is the registration and the second the duplicate.
			<-answered[dupOf]
		}
		r := request{email: email, mode: mode, dup: dupOf >= 0, sentAt: time.Now()}
		r.status, _ = postRegistration(client, url, email, mode)
		r.took = time.Since(r.sentAt)
		reqs[i] = r
		return nil
	})
	want := acceptedByEmail(reqs)
	waitFor(ctx, func() (int, int) { return w.decided(want), sum(want) })
	if emails {
		// Every decision sends one email: the outcome, or "already registered".
		arrived := b.track(want)
		waitFor(ctx, func() (int, int) { return arrived(), sum(want) })
	}
	return b.analyseRush(reqs, w)
}

// acceptedByEmail counts the accepted requests per address.
func acceptedByEmail(reqs []request) map[string]int {
	want := map[string]int{}
	for _, r := range reqs {
		if r.accepted() {
			want[r.email]++
		}
	}
	return want
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// rushResult is what the rush achieved, seen from outside.
type rushResult struct {
	sent, accepted, refused, failed int
	inPerson, online, duplicates    int // accepted first submissions by mode; accepted resubmissions

	acceptedPerSec float64 // 202s per second, first request sent → last 202
	http           latencies

	decided, lost, extra     int
	duplicateAnswers         int            // duplicate_attempt decisions
	statuses                 map[string]int // "confirmed in_person" → count
	toDecision               latencies
	decisionsPerSec          float64       // first → last decision
	lastAcceptToLastDecision time.Duration // how far the decisions trail the answers

	emails, emailsWanted         int
	extraEmails                  int       // emails beyond one per decision
	toEmail                      latencies // first request → first email, per address
	lastAcceptToLastConfirmation time.Duration
	lastAcceptToLastEmail        time.Duration // any decision's email

	replays, garbled int     // outcome messages seen twice, or undecodable
	cpu              float64 // CPU seconds of the process during the rush
}

// analyseRush pairs each address's accepted requests with its decisions
// and emails. An address's first decision (confirmed, waitlisted, …)
// answers its first request; duplicate_attempt decisions answer the
// resubmissions, in order.
func (b *bench) analyseRush(reqs []request, w *watcher) rushResult {
	res := rushResult{sent: len(reqs), statuses: map[string]int{}}
	byEmail, first, lastAccept := res.countRequests(reqs)
	var toDecision, toEmail []time.Duration
	var firstDecision, lastDecision, lastConfirmation, lastEmail time.Time
	for email, rs := range byEmail {
		decided, confirmed := res.countDecisions(rs, w.outcomes(email))
		for k, o := range decided {
			toDecision = append(toDecision, o.at.Sub(rs[k].sentAt))
			if firstDecision.IsZero() || o.at.Before(firstDecision) {
				firstDecision = o.at
			}
			lastDecision = later(lastDecision, o.at)
		}
		arrived := b.emailsTo(email)
		res.emails += min(len(rs), len(arrived))
		res.emailsWanted += len(rs)
		res.extraEmails += max(0, len(arrived)-len(rs))
		if len(arrived) > 0 {
			lastEmail = later(lastEmail, arrived[min(len(rs), len(arrived))-1])
			toEmail = append(toEmail, arrived[0].Sub(rs[0].sentAt))
			if confirmed {
				lastConfirmation = later(lastConfirmation, arrived[0])
			}
		}
	}
	res.acceptedPerSec = perSecond(res.accepted, lastAccept.Sub(first))
	res.toDecision, res.toEmail = percentiles(toDecision), percentiles(toEmail)
	res.decisionsPerSec = perSecond(res.decided, lastDecision.Sub(firstDecision))
	res.lastAcceptToLastDecision = sinceIfAfter(lastDecision, lastAccept)
	res.lastAcceptToLastConfirmation = sinceIfAfter(lastConfirmation, lastAccept)
	res.lastAcceptToLastEmail = sinceIfAfter(lastEmail, lastAccept)
	res.replays, res.garbled = w.anomalies()
	return res
}

// countRequests adds the HTTP side of the rush to res and returns the
// accepted requests by address in the order they were sent, when the first
// request was sent and when the last 202 came.
func (res *rushResult) countRequests(reqs []request) (byEmail map[string][]request, first, lastAccept time.Time) {
	byEmail = map[string][]request{}
	took := make([]time.Duration, 0, len(reqs))
	for _, r := range reqs {
		if first.IsZero() || r.sentAt.Before(first) {
			first = r.sentAt
		}
		took = append(took, r.took)
		switch {
		case r.status == 0:
			res.failed++
			continue
		case !r.accepted():
			res.refused++
			continue
		}
		res.accepted++
		lastAccept = later(lastAccept, r.sentAt.Add(r.took))
		byEmail[r.email] = append(byEmail[r.email], r)
		switch {
		case r.dup:
			res.duplicates++
		case r.mode == events.ModeInPerson:
			res.inPerson++
		default:
			res.online++
		}
	}
	for _, rs := range byEmail {
		slices.SortFunc(rs, func(a, b request) int { return a.sentAt.Compare(b.sentAt) })
	}
	res.http = percentiles(took)
	return byEmail, first, lastAccept
}

// countDecisions adds one address's decisions to res and returns them in
// the order they answer rs, and whether the address was confirmed.
func (res *rushResult) countDecisions(rs []request, seen []outcome) (decided []outcome, confirmed bool) {
	var dups []outcome
	for _, o := range seen {
		if o.subject == events.RegistrationDuplicateAttempt {
			dups = append(dups, o)
			res.duplicateAnswers++
			continue
		}
		decided = append(decided, o)
		res.statuses[o.status+" "+o.mode]++
		confirmed = confirmed || o.status == events.StatusConfirmed
	}
	decided = append(decided, dups...)
	if len(decided) > len(rs) {
		res.extra += len(decided) - len(rs)
		decided = decided[:len(rs)]
	}
	res.decided += len(decided)
	res.lost += len(rs) - len(decided)
	return decided, confirmed
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// sinceIfAfter is t − from, or 0 when t is not set.
func sinceIfAfter(t, from time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(from)
}

// latencies summarises a set of durations.
type latencies struct {
	n             int
	p50, p99, max time.Duration
}

func percentiles(d []time.Duration) latencies {
	if len(d) == 0 {
		return latencies{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return latencies{n: len(s), p50: s[len(s)*50/100], p99: s[min(len(s)*99/100, len(s)-1)], max: s[len(s)-1]}
}
