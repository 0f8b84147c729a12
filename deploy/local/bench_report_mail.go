package main

import (
	"fmt"
	"time"
)

// Targets of the email side (issue #7).
const (
	drainRatioTarget      = 0.85             // mailer drain ≥ 0.85 × bare go-mail
	confirmationLagTarget = 30 * time.Second // last 202 → last confirmation
)

// addRawMail adds the bare go-mail limits, measured beside the drain and
// the fan-out with their emails and connections, to the raw section.
func (rep *report) addRawMail(sec string, s systemResult) {
	d, f := s.drain, s.fanout
	rep.add(sec, "raw.gomail", fmt.Sprintf("go-mail (mailer.BareSendRate), %d connections, the drain's emails", d.workers),
		d.bare, "/s", "")
	rep.add(sec, "raw.gomail_fanout", fmt.Sprintf("go-mail (mailer.BareSendRate), %d connections, the fan-out's emails", f.workers),
		f.bare, "/s", "")
	bareTime := 0.0
	if f.bare > 0 {
		bareTime = float64(f.participants) / f.bare
	}
	rep.add(sec, "raw.gomail_fanout_time", fmt.Sprintf("go-mail, the same: time for %d emails", f.participants), bareTime, "s", "")
}

func (rep *report) addDrain(d drainResult) {
	sec := fmt.Sprintf("mailer drain: %d copies of a %s job queued with the mailer stopped, sent over %d connections (MAILER_WORKERS) (target ratio >= %.2f)",
		d.queued, d.kind, d.workers, drainRatioTarget)
	rep.add(sec, "mail.drain", "emails/s at the sink, (n-1) / (first → last)", d.perSec, "/s", "raw.gomail")
	rep.add(sec, "mail.drain_took", "first → last email at the sink", d.emails.took().Seconds(), "s", "")
	rep.add(sec, "mail.drain_start", "mailer started → last email", d.startToLast.Seconds(), "s", "")
	rep.add(sec, "mail.drain_cpu", "the process's CPU per email, mailer started → last email", d.cpu*1000, "ms", "")
	rep.add(sec, "mail.drain_bare_cpu", "the process's CPU per email, bare go-mail", d.bareCPU*1000, "ms", "")
	rep.addWrites(sec, "mail.drain", d.writes)
	rep.add(sec, "mail.drain_dials", "SMTP connections opened (mailer_smtp_dials_total)", d.writes.dials, "", "")
	rep.add(sec, "mail.drain_sink_conns", "SMTP connections the sink saw opened", float64(d.sinkConns), "", "")
}

func (rep *report) addFanout(f fanoutResult) {
	sec := fmt.Sprintf("agenda-change fan-out: a session everyone attends moved, %d confirmed participants, %d connections, "+
		"debounce %s (target first → last <= %.2f s)", f.participants, f.workers, fanoutDebounce, listmonkFanout.Seconds())
	rep.add(sec, "fanout.took", "agenda-change emails at the sink, first → last", f.emails.took().Seconds(), "s", "")
	rep.add(sec, "fanout.rate", "emails/s, (n-1) / (first → last)", f.emails.rate(), "/s", "raw.gomail_fanout")
	rep.add(sec, "fanout.release_first", "release published → first email (debounce and tick included)", f.releaseToFirst.Seconds(), "s", "")
	rep.add(sec, "fanout.release_last", "release published → last email", f.releaseToLast.Seconds(), "s", "")
	rep.add(sec, "fanout.replica_read", fmt.Sprintf("its first query read again afterwards: %d participants from FerretDB", f.replicaDocs),
		f.replicaRead.Seconds(), "s", "")
	rep.add(sec, "fanout.jobs_took", "notification: first → last job stored on MAIL", f.jobs.took().Seconds(), "s", "")
	rep.add(sec, "fanout.jobs_rate", "notification: jobs/s, (n-1) / (first → last)", f.jobs.rate(), "/s", "")
	rep.add(sec, "fanout.jobs_to_first", "first job on MAIL → first email", f.emails.first.Sub(f.jobs.first).Seconds(), "s", "")
	rep.add(sec, "fanout.jobs_to_last", "last job on MAIL → last email", f.emails.last.Sub(f.jobs.last).Seconds(), "s", "")
	rep.add(sec, "fanout.cpu", "CPU time of the process, release → last email", f.cpu, "s", "")
	cores := 0.0
	if f.releaseToLast > 0 {
		cores = f.cpu / f.releaseToLast.Seconds()
	}
	rep.add(sec, "fanout.cores", "cores busy, release → last email (of the machine's)", cores, "cores", "")
	rep.addWrites(sec, "fanout.mail", f.writes)
	rep.add(sec, "fanout.confirmations", fmt.Sprintf("before it: %d confirmations (events published at once), emails/s", f.confirmations.n),
		f.confirmations.rate(), "/s", "raw.gomail_fanout")
	rep.add(sec, "fanout.confirmations_lag", "before it: events published → last confirmation", f.toConfirmations.Seconds(), "s", "")
}

// addWrites adds the mailer's durable writes per email sent.
func (rep *report) addWrites(sec, key string, w mailWrites) {
	ledger, status, acks, total := w.perEmail()
	rep.add(sec, key+"_ledger", "durable writes per email: sent-ledger writes", ledger, "/email", "")
	rep.add(sec, key+"_status", "durable writes per email: status publishes (stored batches)", status, "/email", "")
	rep.add(sec, key+"_acks", "durable writes per email: acks", acks, "/email", "")
	rep.add(sec, key+"_writes", "durable writes per email, all kinds (naks, dead letters too)", total, "/email", "")
	send, wait, record := w.means()
	rep.add(sec, key+"_send_mean", "mean SMTP send, MAIL FROM → 250 (wait included)", ms(send), "ms", "")
	rep.add(sec, key+"_wait_mean", "mean wait for a slot in the sent ledger's window", ms(wait), "ms", "")
	rep.add(sec, key+"_record_mean", "mean 250 → sent record (the crash window)", ms(record), "ms", "")
}

func (rep *report) addMailCounts(s systemResult) {
	d, f := s.drain, s.fanout
	for k, v := range map[string]int{
		"drain_queued": d.queued, "drain_emails": d.emails.n, "drain_extra": d.extra, "drain_sent": int(d.writes.sent),
		"fanout_participants": f.participants, "fanout_confirmations": f.confirmations.n, "fanout_confirm_extra": f.confirmExtra,
		"fanout_emails": f.emails.n, "fanout_extra": f.extra, "fanout_jobs": f.jobs.n, "fanout_sent": int(f.writes.sent),
		"emails_repeated": s.repeatedEmails,
	} {
		rep.Counts[k] = v
	}
}

func (rep *report) addMailChecks(s systemResult) {
	d, f, r := s.drain, s.fanout, s.rush
	rep.check("mailer drain: an email at the sink per job", "=", float64(d.queued), float64(d.emails.n), false)
	rep.check("mailer drain: emails beyond one per job", "=", 0, float64(d.extra), false)
	rep.check("mailer drain: SMTP connections opened <= MAILER_WORKERS", "<=", float64(d.workers), d.writes.dials, false)
	rep.check("mailer drain: connections the sink saw <= MAILER_WORKERS", "<=", float64(d.workers), float64(d.sinkConns), false)
	ratio := 0.0
	if d.bare > 0 {
		ratio = d.perSec / d.bare
	}
	rep.check("mailer drain / bare go-mail (target)", ">=", drainRatioTarget, ratio, true)

	rep.check("fan-out: one confirmation per participant", "=", float64(f.participants), float64(f.confirmations.n), false)
	rep.check("fan-out: one agenda-change email per participant", "=", float64(f.participants), float64(f.emails.n), false)
	rep.check("fan-out: emails beyond those two per participant", "=", 0, float64(f.extra), false)
	rep.check("fan-out: SMTP connections opened by its mailer <= 10", "<=", float64(f.workers), f.dials, false)
	rep.check("fan-out: first → last agenda-change email, s (target)", "<=", listmonkFanout.Seconds(), f.emails.took().Seconds(),
		true)

	rep.check("rush: last 202 → last confirmation email, s (target)", "<=", confirmationLagTarget.Seconds(),
		r.lastAcceptToLastConfirmation.Seconds(), true)
	rep.check("emails delivered twice (a Message-ID seen again), whole run", "=", 0, float64(s.repeatedEmails), false)
}

// check adds a check; a target is reported, a correctness check fails the
// bench.
func (rep *report) check(name, cmp string, want, got float64, target bool) {
	ok := got == want
	switch cmp {
	case "<=":
		ok = got <= want
	case ">=":
		ok = got >= want
	}
	rep.Checks = append(rep.Checks, check{Name: name, Cmp: cmp, Want: want, Got: got, OK: ok, Target: target})
}
