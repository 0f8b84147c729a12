package notification

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

func TestConfirmationOnline(t *testing.T) {
	h := start(t)
	reg := registration("01JONLINE")
	h.publish(events.RegistrationConfirmed, reg)

	job := h.waitJobs(1)[0]
	if job.ID != "confirmation.01JONLINE.1" || job.Kind != kindConfirmation {
		t.Errorf("job id, kind = %s, %s; want confirmation.01JONLINE.1, confirmation", job.ID, job.Kind)
	}
	if job.To != reg.Email || job.ToName != reg.Name || job.RegistrationID != reg.ID || job.EventID != reg.EventID {
		t.Errorf("job addressing = %+v", job)
	}
	if job.Subject != "You're registered: Vienna Roundtable" {
		t.Errorf("subject = %q", job.Subject)
	}
	for part, body := range map[string]string{"text": job.Text, "html": job.HTML} {
		for _, want := range []string{
			reg.ManageURL, reg.JoinURL, "personal",
			"Monday 9 November 2020, 09:00–17:30 CET", // the event's zone
			"Monday 9 November 2020, 03:00–11:30 EST", // the attendee's
			"America/New_York",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s part lacks %q:\n%s", part, want, body)
			}
		}
		if strings.Contains(body, "Palais Ferstel") {
			t.Errorf("%s part names the venue to an online attendee", part)
		}
	}

	if len(job.Attachments) != 1 {
		t.Fatalf("attachments = %d, want invite.ics", len(job.Attachments))
	}
	att := job.Attachments[0]
	if att.Name != "invite.ics" || att.ContentType != "text/calendar; charset=utf-8; method=PUBLISH" {
		t.Errorf("attachment = %s (%s)", att.Name, att.ContentType)
	}
	ical := unfold(string(att.Data))
	for _, want := range []string{
		"BEGIN:VCALENDAR", "METHOD:PUBLISH", "BEGIN:VEVENT", "UID:01JONLINE@plenary",
		"DTSTART:20201109T080000Z", "DTEND:20201109T163000Z", "SUMMARY:Vienna Roundtable",
		"LOCATION:Online", "DESCRIPTION:Event page: " + reg.Event.PublicURL,
	} {
		if !strings.Contains(ical, want+"\r\n") {
			t.Errorf("invite.ics lacks line %q:\n%s", want, ical)
		}
	}
	if strings.Contains(ical, "/r/") || strings.Contains(ical, "/j/") {
		t.Errorf("invite.ics carries a personal link:\n%s", ical)
	}
}

// unfold undoes iCalendar line folding.
func unfold(s string) string { return strings.ReplaceAll(s, "\r\n ", "") }

func TestConfirmationInPerson(t *testing.T) {
	h := start(t)
	reg := registration("01JVENUE")
	reg.Mode = events.ModeInPerson // keeps a join URL and a zone of its own: neither may show
	h.publish(events.RegistrationConfirmed, reg)

	job := h.waitJobs(1)[0]
	for part, body := range map[string]string{"text": job.Text, "html": job.HTML} {
		for _, want := range []string{reg.ManageURL, "Palais Ferstel", "Strauchgasse 4, 1010 Wien", "09:00–17:30 CET"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s part lacks %q:\n%s", part, want, body)
			}
		}
		for _, unwanted := range []string{reg.JoinURL, "EST", "America/New_York"} {
			if strings.Contains(body, unwanted) {
				t.Errorf("%s part of an in-person confirmation contains %q:\n%s", part, unwanted, body)
			}
		}
	}
	if len(job.Attachments) != 1 || !strings.Contains(unfold(string(job.Attachments[0].Data)), "LOCATION:Palais Ferstel\\, Strauchgasse 4\\, 1010 Wien\r\n") {
		t.Errorf("invite.ics lacks the venue: %+v", job.Attachments)
	}
}

func TestRedeliveryAndReplayYieldOneJob(t *testing.T) {
	h := start(t)
	reg := registration("01JREPLAY")

	// The same registration at the same version, in two messages with
	// distinct ids (so NATS keeps both), as a redelivery or a replay is.
	h.publish(events.RegistrationConfirmed, reg)
	h.waitJobs(1)
	h.publish(events.RegistrationConfirmed, reg)
	h.settled()
	// And both at once, racing each other to the claim.
	h.publish(events.RegistrationConfirmed, reg)
	h.publish(events.RegistrationConfirmed, reg)
	jobs := h.waitJobs(1)
	if jobs[0].ID != "confirmation.01JREPLAY.1" {
		t.Errorf("job id = %s", jobs[0].ID)
	}

	// A new version of the registration is news: a second email.
	reg.Version = 2
	h.publish(events.RegistrationConfirmed, reg)
	jobs = h.waitJobs(2)
	if jobs[1].ID != "confirmation.01JREPLAY.2" {
		t.Errorf("second job id = %s, want confirmation.01JREPLAY.2", jobs[1].ID)
	}

	var list struct{ Items []emailSummary }
	h.getJSON("/admin/events/"+reg.EventID+"/emails", &list)
	if len(list.Items) != 2 {
		t.Errorf("email log has %d emails, want 2: %+v", len(list.Items), list.Items)
	}
	// NATS would drop a second publish of the same job anyway; what counts
	// is that the service queued each email once and only replayed after.
	_, metrics := h.get("/metrics", "")
	if !strings.Contains(string(metrics), `notification_mail_jobs_total{kind="confirmation",outcome="queued"} 2`) {
		t.Errorf("the service queued the emails other than once each:\n%s", grepLines(string(metrics), "notification_mail_jobs_total"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A crash between the claim and the publish leaves a claimed email that was
// never queued; the redelivered message must queue the email as claimed.
func TestRedeliveryPublishesTheClaimedEmail(t *testing.T) {
	h := start(t)
	emails := newEmailStore(h.db())
	ctx := context.Background()
	reg := registration("01JCRASH")
	stored := emailRecord{
		ID: "confirmation.01JCRASH.1", EventID: reg.EventID, RegistrationID: reg.ID, Kind: kindConfirmation,
		To: reg.Email, Subject: "as rendered before the crash", Text: "text before the crash", CreatedAt: time.Now().UTC(),
	}
	if _, err := emails.emails.InsertOne(ctx, stored); err != nil { // claimed, then the crash
		t.Fatal(err)
	}
	h.publish(events.RegistrationConfirmed, reg)
	job := h.waitJobs(1)[0]
	if job.ID != stored.ID || job.Subject != stored.Subject || job.Text != stored.Text {
		t.Errorf("job = %s %q %q, want the stored email %s %q %q", job.ID, job.Subject, job.Text, stored.ID, stored.Subject, stored.Text)
	}
}

// Past the NATS duplicate window a republished job would be sent again, so
// an email the mailer has reported on is not queued again.
func TestLateReplayOfHandledEmail(t *testing.T) {
	h := start(t)
	emails := newEmailStore(h.db())
	ctx := context.Background()
	old := time.Now().UTC().Add(-time.Hour)
	handled, lost := registration("01JHANDLED"), registration("01JLOST")
	for _, reg := range []events.Registration{handled, lost} {
		if _, err := emails.emails.InsertOne(ctx, emailRecord{
			ID: "confirmation." + reg.ID + ".1", EventID: reg.EventID, RegistrationID: reg.ID,
			Kind: kindConfirmation, To: reg.Email, Subject: "s", Text: "t", CreatedAt: old,
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := emails.addStatuses(ctx, []statusRecord{{ID: "st1", JobID: "confirmation.01JHANDLED.1", Status: events.MailSent, Attempt: 1, At: old}}); err != nil {
		t.Fatal(err)
	}
	h.publish(events.RegistrationConfirmed, handled)
	h.publish(events.RegistrationConfirmed, lost)
	jobs := h.waitJobs(1)
	if jobs[0].ID != "confirmation.01JLOST.1" {
		t.Errorf("queued %s, want only the email the mailer never reported on", jobs[0].ID)
	}
}

func TestUserTextCannotInjectMarkupOrHeaders(t *testing.T) {
	h := start(t)
	script := registration("01JSCRIPT")
	script.Name = `<script>alert("x")</script>`
	script.Event.Title = `Roundtable <b>& friends</b>`
	inject := registration("01JINJECT")
	inject.Name = "Mallory\r\nBcc: victim@example.org"
	inject.Event.Title = "Roundtable\r\nBcc: victim@example.org"
	h.publish(events.RegistrationConfirmed, script)
	h.publish(events.RegistrationConfirmed, inject)

	for _, job := range h.waitJobs(2) {
		switch job.RegistrationID {
		case script.ID:
			if strings.Contains(job.HTML, "<script>") || strings.Contains(job.HTML, "<b>&") {
				t.Errorf("HTML carries the participant's markup:\n%s", job.HTML)
			}
			if !strings.Contains(job.HTML, "&lt;script&gt;") || !strings.Contains(job.HTML, "&lt;b&gt;&amp; friends") {
				t.Errorf("HTML lacks the escaped name and title:\n%s", job.HTML)
			}
			if !strings.Contains(job.Text, script.Name) {
				t.Errorf("text part should show the name as written:\n%s", job.Text)
			}
		case inject.ID:
			for field, v := range map[string]string{"to_name": job.ToName, "subject": job.Subject} {
				if strings.ContainsAny(v, "\r\n") {
					t.Errorf("%s %q carries a line break into a header", field, v)
				}
			}
			if job.ToName != "Mallory Bcc: victim@example.org" || job.Subject != "You're registered: Roundtable Bcc: victim@example.org" {
				t.Errorf("to_name, subject = %q, %q", job.ToName, job.Subject)
			}
		default:
			t.Errorf("unexpected job %s", job.ID)
		}
	}
}

func TestOtherKinds(t *testing.T) {
	h := start(t)
	tests := []struct {
		typ, id, reason, status string
		wantID, wantSubject     string
		wantText                string
	}{
		{events.RegistrationWaitlisted, "01JWAIT", "", events.StatusWaitlisted, "waitlisted.01JWAIT.1",
			"You're on the waiting list: Vienna Roundtable", "waiting list"},
		{events.RegistrationPending, "01JPEND", "", events.StatusPending, "pending.01JPEND.1",
			"Your registration is awaiting approval: Vienna Roundtable", "approve"},
		{events.RegistrationRejected, "01JFULL", "full", events.StatusRejected, "rejected.01JFULL.1",
			"We could not register you: Vienna Roundtable", "the event is full"},
		{events.RegistrationRejected, "01JNOTE", "Speakers only", events.StatusRejected, "rejected.01JNOTE.1",
			"We could not register you: Vienna Roundtable", "Note from the organisers: Speakers only"},
		{events.RegistrationDuplicateAttempt, "01JDUP", "", events.StatusConfirmed, "",
			"You are already registered: Vienna Roundtable", "You are already registered."},
	}
	want := map[string]int{}
	var firstDup events.Envelope
	for i, tc := range tests {
		reg := registration(tc.id)
		reg.Reason, reg.Status = tc.reason, tc.status
		env := h.publish(tc.typ, reg)
		if tc.typ == events.RegistrationDuplicateAttempt {
			firstDup = env
			tests[i].wantID = fmt.Sprintf("duplicate.%s.%d", reg.ID, env.Time.Truncate(duplicateWindow).Unix())
		}
		want[tests[i].wantID] = i
	}
	// "Already registered" emails are limited per address: another attempt
	// in the same window gets none, one in a later window gets its own.
	dup := registration("01JDUP")
	for _, at := range []time.Time{firstDup.Time, firstDup.Time.Add(duplicateWindow)} {
		env, err := events.New("plenary/registration", events.RegistrationDuplicateAttempt, dup.ID, dup)
		if err != nil {
			t.Fatal(err)
		}
		env.Time = at
		h.publishEnvelope(env)
	}
	want[fmt.Sprintf("duplicate.01JDUP.%d", firstDup.Time.Add(duplicateWindow).Truncate(duplicateWindow).Unix())] = len(tests) - 1

	jobs := h.waitJobs(len(tests) + 1)
	for _, job := range jobs {
		i, ok := want[job.ID]
		if !ok {
			t.Errorf("unexpected job %s", job.ID)
			continue
		}
		tc := tests[i]
		t.Run(job.ID, func(t *testing.T) {
			if job.Subject != tc.wantSubject {
				t.Errorf("subject = %q, want %q", job.Subject, tc.wantSubject)
			}
			if !strings.Contains(job.Text, tc.wantText) || !strings.Contains(job.HTML, tc.wantText) {
				t.Errorf("text or HTML lacks %q:\n%s\n%s", tc.wantText, job.Text, job.HTML)
			}
			reg := registration(strings.Split(job.ID, ".")[1])
			for _, body := range []string{job.Text, job.HTML} {
				if !strings.Contains(body, reg.ManageURL) {
					t.Errorf("lacks the manage link:\n%s", body)
				}
				if strings.Contains(body, reg.JoinURL) {
					t.Errorf("a %s email carries the join link", job.Kind)
				}
			}
			if len(job.Attachments) != 0 {
				t.Errorf("%s email has attachments", job.Kind)
			}
		})
	}
}

func TestUnknownTypesAreAckedAndPoisonDeadLettered(t *testing.T) {
	h := start(t)
	reg := registration("01JOTHER")
	for _, typ := range []string{events.RegistrationReceived, events.RegistrationUpdated, events.RegistrationErased, events.AttendanceJoined, "registration.v1.registration.future_thing"} {
		h.publish(typ, reg)
	}
	ev, err := events.New("plenary/registration", events.EventCreated, reg.EventID, reg.Event)
	if err != nil {
		t.Fatal(err)
	}
	h.publishEnvelope(ev)
	h.settled()
	if n := len(h.messages(events.StreamMail)); n != 0 {
		t.Errorf("%d mail jobs for events that call for no email", n)
	}
	if n := len(h.messages(events.StreamDLQ)); n != 0 {
		t.Errorf("%d dead letters for events that are merely unknown", n)
	}

	// Messages no email can come from are dead-lettered, not retried.
	bad, err := events.New("plenary/registration", events.RegistrationConfirmed, "x", []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	h.publishEnvelope(bad)
	noAddress := registration("01JNOADDR")
	noAddress.Email = "ada@example.org\r\nBcc: victim@example.org"
	h.publish(events.RegistrationConfirmed, noAddress)
	h.settled()
	if n := len(h.messages(events.StreamDLQ)); n != 2 {
		t.Errorf("%d dead letters, want 2 (undecodable, bad address)", n)
	}
	if n := len(h.messages(events.StreamMail)); n != 0 {
		t.Errorf("%d mail jobs from bad messages", n)
	}
}
