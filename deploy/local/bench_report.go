package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

// report is the bench's one table, as printed and as written to JSON.
type report struct {
	At          time.Time      `json:"at"`
	N           int            `json:"registrations"`
	Concurrency int            `json:"concurrency"`
	CPUs        int            `json:"cpus"`
	GoVersion   string         `json:"go_version"`
	Process     string         `json:"process"`
	DrainEmail  string         `json:"drain_email_kind"`  // the kind of email the mailer drain copied
	FanoutEmail string         `json:"fanout_email_kind"` // the kind the fan-out's bare go-mail measure copied
	Rows        []row          `json:"rows"`
	Counts      map[string]int `json:"counts"`
	Checks      []check        `json:"checks"`
}

// row is one figure, beside the raw limit it is compared with.
type row struct {
	Key     string  `json:"key"`
	Section string  `json:"section"`
	Measure string  `json:"measure"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	// LimitKey names the raw-limit row this one is divided by.
	LimitKey string  `json:"limit_key,omitempty"`
	Limit    float64 `json:"limit,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
}

// check is a condition on the run. Correctness checks fail the bench;
// targets are reported only.
type check struct {
	Name   string  `json:"name"`
	Cmp    string  `json:"cmp"` // "=", "<=" or ">="
	Want   float64 `json:"want"`
	Got    float64 `json:"got"`
	OK     bool    `json:"ok"`
	Target bool    `json:"target,omitempty"`
}

const oneProcess = "one process: NATS, FerretDB, the four services, the SMTP sink and the bench's clients"

func newReport(b *bench, r raw, s systemResult) *report {
	rep := &report{
		At: time.Now().UTC(), N: b.n, Concurrency: b.workers, CPUs: runtime.NumCPU(),
		GoVersion: runtime.Version(), Process: oneProcess, DrainEmail: s.drain.kind, FanoutEmail: s.fanout.kind,
	}
	rep.addRaw(b, r, s)
	rep.addRush(b, s.rush)
	rep.addCore(b, s.core)
	rep.addCoreOpen(s.coreOpen)
	rep.addOpen(s.open)
	rep.addDrain(s.drain)
	rep.addFanout(s.fanout)
	sec := "process (" + oneProcess + ")"
	rep.add(sec, "process.peak_rss", "peak RSS", s.usage.peakRSSMiB, "MiB", "")
	rep.add(sec, "process.cpu", "CPU time, whole run", s.usage.cpu, "s", "")
	rep.add(sec, "process.cpu_rush", "CPU time during the rush", s.rush.cpu, "s", "")
	perReg := s.rush.cpu / float64(max(1, s.rush.accepted))
	rep.add(sec, "process.cpu_per_registration", "CPU per accepted registration (rush, its emails included)",
		1000*perReg, "ms", "")
	if perReg > 0 {
		// What the machine can keep up with, emails included: the rush
		// accepts faster while the email work queues behind it.
		rep.add(sec, "process.sustained", fmt.Sprintf("registrations/s %d CPUs sustain at that CPU each", runtime.NumCPU()),
			float64(runtime.NumCPU())/perReg, "/s", "")
	}
	rep.addCounts(s)
	rep.addChecks(s)
	return rep
}

func (rep *report) addRaw(b *bench, r raw, s systemResult) {
	sec := "raw limits of this machine (bare clients, same servers, same run)"
	rep.add(sec, "raw.jetstream_publish", fmt.Sprintf("JetStream publish, sync, %d publishers", b.workers), r.publish, "/s", "")
	rep.add(sec, "raw.jetstream_batch_100", "JetStream atomic batches of 100, 1 publisher", r.batch100, "msgs/s", "")
	rep.add(sec, "raw.jetstream_batch_500", "JetStream atomic batches of 500, 1 publisher", r.batch500, "msgs/s", "")
	rep.add(sec, "raw.mongo_insert_one", fmt.Sprintf("FerretDB InsertOne, %d writers", b.workers), r.insertOne, "/s", "")
	rep.add(sec, "raw.mongo_insert_many", "FerretDB InsertMany, batches of 500, 1 writer", r.insertMany, "docs/s", "")
	rep.addRawMail(sec, s)
}

func (rep *report) addRush(b *bench, r rushResult) {
	sec := fmt.Sprintf("registration rush: %d requests from %d clients; %d seats in person, online unlimited, waitlist",
		r.sent, b.workers, inPersonSeats)
	rep.add(sec, "rush.accepted", "accepted (202) per second", r.acceptedPerSec, "/s", "raw.jetstream_publish")
	rep.addLatencies(sec, "rush.http", "HTTP", r.http, true)
	rep.addLatencies(sec, "rush.decision", "request → decision on NATS", r.toDecision, false)
	rep.add(sec, "rush.decisions", "decisions per second (first → last)", r.decisionsPerSec, "/s", "raw.mongo_insert_many")
	rep.add(sec, "rush.decision_lag", "last 202 → last decision", r.lastAcceptToLastDecision.Seconds(), "s", "")
	rep.addLatencies(sec, "rush.email", "request → email at the sink", r.toEmail, false)
	rep.add(sec, "rush.confirmation_lag", "last 202 → last confirmation email", r.lastAcceptToLastConfirmation.Seconds(), "s", "")
	rep.add(sec, "rush.email_lag", "last 202 → last email (any decision)", r.lastAcceptToLastEmail.Seconds(), "s", "")
}

// addCore reports the rush run again with the notification service
// paused: what accepting and deciding achieve when they have the machine.
func (rep *report) addCore(b *bench, r rushResult) {
	sec := fmt.Sprintf("registration core alone: the same rush, %d requests, notification paused (no email work)", b.n)
	rep.add(sec, "core.accepted", "accepted (202) per second", r.acceptedPerSec, "/s", "raw.jetstream_publish")
	rep.addLatencies(sec, "core.http", "HTTP", r.http, true)
	rep.addLatencies(sec, "core.decision", "request → decision on NATS", r.toDecision, false)
	rep.add(sec, "core.decisions", "decisions per second (first → last)", r.decisionsPerSec, "/s", "raw.mongo_insert_many")
	rep.add(sec, "core.decision_lag", "last 202 → last decision", r.lastAcceptToLastDecision.Seconds(), "s", "")
}

// addCoreOpen reports the open loop with the notification service paused.
func (rep *report) addCoreOpen(o openResult) {
	sec := fmt.Sprintf("registration core alone, open loop: half its accept rate, %s (target HTTP p99 <= %s)",
		openLoopFor, fmtMS(openLoopTarget))
	rep.add(sec, "core_open.rate", "arrivals per second (achieved)", o.offered, "/s", "")
	rep.addLatencies(sec, "core_open.http", "HTTP, from the scheduled time", o.http, true)
}

func (rep *report) addOpen(o openResult) {
	sec := fmt.Sprintf("open loop: fixed arrival rate, half the rush's accept rate, %s (target HTTP p99 <= %s)",
		openLoopFor, openLoopTarget)
	rep.add(sec, "open.rate", "arrivals per second (achieved)", o.offered, "/s", "")
	rep.addLatencies(sec, "open.http", "HTTP, from the scheduled time", o.http, true)
}

func (rep *report) addLatencies(sec, key, what string, l latencies, withMax bool) {
	rep.add(sec, key+"_p50", what+" p50", ms(l.p50), "ms", "")
	rep.add(sec, key+"_p99", what+" p99", ms(l.p99), "ms", "")
	if withMax {
		rep.add(sec, key+"_max", what+" max", ms(l.max), "ms", "")
	}
}

// add appends a row; with limitKey it is divided by that (earlier) row.
func (rep *report) add(section, key, measure string, value float64, unit, limitKey string) {
	r := row{Key: key, Section: section, Measure: measure, Value: value, Unit: unit, LimitKey: limitKey}
	if limit, ok := rep.row(limitKey); ok && limit.Value > 0 {
		r.Limit, r.Ratio = limit.Value, value/limit.Value
	}
	rep.Rows = append(rep.Rows, r)
}

func (rep *report) row(key string) (row, bool) {
	for _, r := range rep.Rows {
		if r.Key == key {
			return r, true
		}
	}
	return row{}, false
}

func (rep *report) addCounts(s systemResult) {
	r, o := s.rush, s.open
	rep.Counts = map[string]int{
		"rush_sent": r.sent, "rush_accepted": r.accepted, "rush_refused": r.refused, "rush_failed": r.failed,
		"rush_decided": r.decided, "rush_lost": r.lost, "rush_extra": r.extra,
		"rush_in_person": r.inPerson, "rush_online": r.online,
		"rush_duplicates": r.duplicates, "rush_duplicate_answers": r.duplicateAnswers,
		"rush_emails": r.emails, "rush_emails_wanted": r.emailsWanted, "rush_extra_emails": r.extraEmails,
		"rush_replayed_outcomes": r.replays, "rush_garbled_outcomes": r.garbled,
		"open_sent": o.sent, "open_accepted": o.accepted, "open_refused": o.refused, "open_failed": o.failed,
		"open_decided": o.decided, "open_emails": o.emails, "open_wanted": o.wanted,
		"outcomes_seen": s.outcomesSeen, "outcomes_stored": s.outcomesStored,
	}
	rep.addMailCounts(s)
	for status, n := range r.statuses {
		rep.Counts["rush_"+status] = n
	}
}

func (rep *report) addChecks(s systemResult) {
	r := s.rush
	status := func(st, mode string) float64 { return float64(r.statuses[st+" "+mode]) }
	confirmedInPerson := status(events.StatusConfirmed, events.ModeInPerson)
	eq := func(name string, want, got float64) {
		rep.Checks = append(rep.Checks, check{Name: name, Cmp: "=", Want: want, Got: got, OK: want == got})
	}
	eq("every rush request answered 202", float64(r.sent), float64(r.accepted))
	eq("rush decisions for accepted requests", float64(r.accepted), float64(r.decided))
	eq("rush requests without a decision (lost)", 0, float64(r.lost))
	eq("rush decisions beyond one per request", 0, float64(r.extra))
	eq("confirmed in person = min(seats, in-person requests)", float64(min(inPersonSeats, r.inPerson)), confirmedInPerson)
	eq("waitlisted in person = in-person requests - confirmed", float64(r.inPerson)-confirmedInPerson,
		status(events.StatusWaitlisted, events.ModeInPerson))
	eq("confirmed online = online requests", float64(r.online), status(events.StatusConfirmed, events.ModeOnline))
	eq("duplicate_attempt decisions = resubmissions", float64(r.duplicates), float64(r.duplicateAnswers))
	eq("rush emails at the sink (one per decision)", float64(r.emailsWanted), float64(r.emails))
	c := s.core
	eq("core alone: decisions for accepted requests, none lost", float64(c.accepted), float64(c.decided-c.extra))
	eq("core alone, open loop: decisions for accepted requests", float64(s.coreOpen.wanted), float64(s.coreOpen.decided))
	eq("core alone: confirmed in person = min(seats, in-person requests)", float64(min(inPersonSeats, c.inPerson)),
		float64(c.statuses[events.StatusConfirmed+" "+events.ModeInPerson]))
	eq("open-loop decisions for accepted requests", float64(s.open.wanted), float64(s.open.decided))
	eq("rush emails beyond one per decision", 0, float64(r.extraEmails))
	eq("outcomes seen on NATS = outcomes stored in their stream", float64(s.outcomesSeen), float64(s.outcomesStored))
	p99 := ms(s.open.http.p99)
	rep.Checks = append(rep.Checks, check{Name: "open-loop HTTP p99 (target)", Cmp: "<=", Want: ms(openLoopTarget),
		Got: p99, OK: s.open.http.n > 0 && p99 <= ms(openLoopTarget), Target: true})
	cp99 := ms(s.coreOpen.http.p99)
	rep.Checks = append(rep.Checks, check{Name: "core alone, open-loop HTTP p99 (target)", Cmp: "<=", Want: ms(openLoopTarget),
		Got: cp99, OK: s.coreOpen.http.n > 0 && cp99 <= ms(openLoopTarget), Target: true})
	rep.addMailChecks(s)
}

// correct reports whether every correctness check passed.
func (rep *report) correct() bool {
	for _, c := range rep.Checks {
		if !c.OK && !c.Target {
			return false
		}
	}
	return true
}

func (rep *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nplenary bench, %s, %d CPUs, %s\n", rep.At.Format(time.RFC3339), rep.CPUs, rep.GoVersion)
	section := ""
	for _, r := range rep.Rows {
		if r.Section != section {
			section = r.Section
			fmt.Fprintf(w, "\n%s\n", section)
		}
		line := fmt.Sprintf("  %-62s %10s %-6s", r.Measure, figure(r.Value, r.Unit), r.Unit)
		if limit, ok := rep.row(r.LimitKey); ok {
			line += fmt.Sprintf("  ratio %.3f to %s (%s %s)", r.Ratio, limit.Measure, figure(limit.Value, limit.Unit), limit.Unit)
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	fmt.Fprintf(w, "\nchecks\n")
	for _, c := range rep.Checks {
		verdict := "ok"
		switch {
		case !c.OK && c.Target:
			verdict = "MISSED"
		case !c.OK:
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "  %-60s want %s %-8s got %-8s %s\n", c.Name, c.Cmp, figure(c.Want, ""), figure(c.Got, ""), verdict)
	}
	fmt.Fprintf(w, "\ncounts\n  rush: sent %d, accepted %d, refused %d, failed %d; decided %d, lost %d, extra %d; "+
		"duplicates %d answered %d; replayed outcomes %d, garbled %d\n",
		rep.Counts["rush_sent"], rep.Counts["rush_accepted"], rep.Counts["rush_refused"], rep.Counts["rush_failed"],
		rep.Counts["rush_decided"], rep.Counts["rush_lost"], rep.Counts["rush_extra"],
		rep.Counts["rush_duplicates"], rep.Counts["rush_duplicate_answers"],
		rep.Counts["rush_replayed_outcomes"], rep.Counts["rush_garbled_outcomes"])
	fmt.Fprintf(w, "  open loop: sent %d, accepted %d, refused %d, failed %d; decided %d of %d, emails %d\n",
		rep.Counts["open_sent"], rep.Counts["open_accepted"], rep.Counts["open_refused"], rep.Counts["open_failed"],
		rep.Counts["open_decided"], rep.Counts["open_wanted"], rep.Counts["open_emails"])
	fmt.Fprintf(w, "  mail: drain queued %d, at the sink %d, beyond one each %d; fan-out %d participants, %d confirmations "+
		"(beyond one each %d), %d agenda-change emails (beyond %d), %d jobs on MAIL; emails delivered twice %d\n",
		rep.Counts["drain_queued"], rep.Counts["drain_emails"], rep.Counts["drain_extra"],
		rep.Counts["fanout_participants"], rep.Counts["fanout_confirmations"], rep.Counts["fanout_confirm_extra"],
		rep.Counts["fanout_emails"], rep.Counts["fanout_extra"], rep.Counts["fanout_jobs"], rep.Counts["emails_repeated"])
}

// figure formats a value with the precision its unit deserves.
func figure(v float64, unit string) string {
	switch unit {
	case "ms":
		return fmt.Sprintf("%.1f", v)
	case "s", "cores":
		return fmt.Sprintf("%.2f", v)
	case "/email":
		return fmt.Sprintf("%.3f", v)
	case "":
		if v == float64(int64(v)) {
			return fmt.Sprintf("%d", int64(v))
		}
		if v > -100 && v < 100 {
			return fmt.Sprintf("%.3f", v)
		}
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fmtMS(d time.Duration) string { return fmt.Sprintf("%.1f ms", ms(d)) }

func (rep *report) writeJSON(path string) error {
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("bench json: %w", err)
	}
	return os.WriteFile(path, append(raw, '\n'), 0o600)
}
