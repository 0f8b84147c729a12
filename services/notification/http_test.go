package notification

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// mailerReports publishes a status as the mailer does.
func (h *harness) mailerReports(job events.MailJob, status string, attempt int, at time.Time) {
	h.t.Helper()
	env, err := events.NewWithID(fmt.Sprintf("%s:%s:%d", job.ID, status, attempt), "plenary/mailer",
		"mail.v1.status."+status, job.ID, events.MailStatus{
			JobID: job.ID, EventID: job.EventID, Status: status, Attempt: attempt, Detail: "detail " + status, At: at,
		})
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishEnvelope(env)
}

func TestEmailLog(t *testing.T) {
	h := start(t)
	reg := registration("01JLOG")
	other := registration("01JLOGOTHER")
	other.EventID = reg.EventID
	other.Email = "grace@example.org"
	h.publish(events.RegistrationConfirmed, reg)
	h.publish(events.RegistrationWaitlisted, other)
	var job events.MailJob
	for _, j := range h.waitJobs(2) {
		if j.RegistrationID == reg.ID {
			job = j
		}
	}
	emailsOf := func(query string) []emailSummary {
		t.Helper()
		var list struct{ Items []emailSummary }
		h.getJSON("/admin/events/"+reg.EventID+"/emails"+query, &list)
		return list.Items
	}

	if items := emailsOf(""); len(items) != 2 || items[0].Status != events.MailQueued || items[1].Status != events.MailQueued {
		t.Fatalf("before any report: %+v, want 2 queued", items)
	}

	// Deferred on the first attempt, sent on the second.
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	h.mailerReports(job, events.MailDeferred, 1, t0)
	h.mailerReports(job, events.MailSent, 2, t0.Add(time.Second))
	testkit.Eventually(t, 10*time.Second, func() error {
		items := emailsOf("?status=sent")
		if len(items) != 1 {
			return fmt.Errorf("sent emails: %+v", items)
		}
		return nil
	})

	item := emailsOf("?status=sent")[0]
	if item.ID != job.ID || item.Kind != kindConfirmation || item.RegistrationID != reg.ID || item.To != reg.Email ||
		item.Subject != job.Subject || item.Attempts != 2 || !item.UpdatedAt.Equal(t0.Add(time.Second)) || item.CreatedAt.IsZero() {
		t.Errorf("sent email = %+v", item)
	}
	for query, want := range map[string]int{
		"":                                    2,
		"?status=queued":                      1,
		"?status=deferred":                    0,
		"?status=failed":                      0,
		"?to=ADA-01JLOG@Example.ORG":          1,
		"?to=grace@example.org&status=queued": 1,
		"?to=grace@example.org&status=sent":   0,
		"?to=nobody@example.org":              0,
	} {
		if got := emailsOf(query); len(got) != want {
			t.Errorf("emails%s: %d, want %d: %+v", query, len(got), want, got)
		}
	}
	var none struct{ Items []emailSummary }
	h.getJSON("/admin/events/no-such-event/emails", &none)
	if none.Items == nil || len(none.Items) != 0 {
		t.Errorf("unknown event: items = %#v, want []", none.Items)
	}
	if status, body := h.get("/admin/events/"+reg.EventID+"/emails?status=bounced", adminToken); status != http.StatusUnprocessableEntity {
		t.Errorf("status=bounced: %d %s, want 422", status, body)
	}

	var detail emailDetail
	h.getJSON("/admin/emails/"+job.ID, &detail)
	if detail.ID != job.ID || detail.Text != job.Text || detail.HTML != job.HTML || detail.Status != events.MailSent ||
		!strings.Contains(detail.Text, reg.ManageURL) {
		t.Errorf("detail = %+v", detail)
	}
	if len(detail.Attempts) != 2 || detail.Attempts[0].Status != events.MailDeferred || detail.Attempts[0].Detail != "detail deferred" ||
		detail.Attempts[1].Status != events.MailSent || detail.Attempts[1].Attempt != 2 {
		t.Errorf("attempts = %+v, want deferred then sent", detail.Attempts)
	}
	if len(detail.Attachments) != 1 || detail.Attachments[0].Name != "invite.ics" || detail.Attachments[0].Size == 0 {
		t.Errorf("attachments = %+v", detail.Attachments)
	}
}

func TestAdminRoutesNeedAToken(t *testing.T) {
	h := start(t)
	for _, route := range []struct{ method, path string }{
		{"GET", "/admin/events/e1/emails"},
		{"GET", "/admin/emails/x"},
		{"POST", "/admin/emails/x/resend"},
		{"GET", "/admin/events/e1/dead-letters"},
		{"POST", "/admin/events/e1/dead-letters/replay"},
		{"POST", "/admin/events/e1/announcements"},
		{"GET", "/admin/events/e1/announcements"},
	} {
		for _, token := range []string{"", "wrong-token"} {
			body := []byte(`{"subject":"s","body":"b","audience":"all"}`)
			if status, _, _ := h.do(route.method, route.path, token, body); status != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", route.method, route.path, token, status)
			}
		}
	}
	status, body := h.get("/admin/emails/confirmation.nope.1", adminToken)
	var p struct {
		Type   string
		Status int
		Detail string
	}
	if err := json.Unmarshal(body, &p); err != nil || status != http.StatusNotFound || p.Status != 404 || !strings.HasSuffix(p.Type, "/not_found") {
		t.Errorf("unknown email: %d %s, want a 404 problem", status, body)
	}
}

// do sends a request with token (none if empty) and body (JSON unless
// headers set another Content-Type); headers are name, value pairs.
func (h *harness) do(method, path, token string, body []byte, headers ...string) (int, http.Header, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, out
}

// postJSON posts v as an organizer, expects want and decodes the answer
// into out (if not nil).
func (h *harness) postJSON(path string, v any, want int, out any, headers ...string) {
	h.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		h.t.Fatal(err)
	}
	status, _, raw := h.do(http.MethodPost, path, adminToken, body, headers...)
	if status != want {
		h.t.Fatalf("POST %s: %d %s, want %d", path, status, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Fatalf("POST %s: %v: %s", path, err, raw)
		}
	}
}

// mailerSays publishes a status with an SMTP reply, as the mailer does (the
// real one redacts the addresses first; these replies keep them, to show
// that the log redacts them too).
func (h *harness) mailerSays(job events.MailJob, status string, attempt int, at time.Time, detail string) {
	h.t.Helper()
	env, err := events.NewWithID(fmt.Sprintf("%s:%s:%d", job.ID, status, attempt), "plenary/mailer",
		"mail.v1.status."+status, job.ID, events.MailStatus{
			JobID: job.ID, EventID: job.EventID, Status: status, Attempt: attempt, Detail: detail, At: at,
		})
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishEnvelope(env)
}

// jobTo picks the job of kind addressed to a registration.
func jobTo(t *testing.T, jobs []events.MailJob, kind, regID string) events.MailJob {
	t.Helper()
	var found []events.MailJob
	for _, j := range jobs {
		if j.Kind == kind && j.RegistrationID == regID {
			found = append(found, j)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s jobs for %s, want 1: %v", len(found), kind, regID, jobIDs(jobs))
	}
	return found[0]
}

func TestEmailLogAttemptsDeadLettersAndReplay(t *testing.T) {
	h := start(t)
	ada, grace := registration("01JATT"), registration("01JDEAD")
	grace.EventID, grace.Email = ada.EventID, "grace@example.org"
	h.publish(events.RegistrationConfirmed, ada)
	h.publish(events.RegistrationConfirmed, grace)
	jobs := h.waitJobs(2)
	adaJob, graceJob := jobTo(t, jobs, kindConfirmation, ada.ID), jobTo(t, jobs, kindConfirmation, grace.ID)

	// Ada's relay defers three times, then takes it; Grace's address is
	// refused for good.
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	for i := 1; i <= 3; i++ {
		h.mailerSays(adaJob, events.MailDeferred, i, t0.Add(time.Duration(i)*time.Minute),
			fmt.Sprintf("451 4.7.1 <%s>: greylisted, try again later (%d)", ada.Email, i))
	}
	h.mailerSays(adaJob, events.MailSent, 4, t0.Add(5*time.Minute), "250 2.0.0 Ok: queued as 4F2A")
	h.mailerSays(graceJob, events.MailFailed, 1, t0.Add(time.Minute), "550 5.1.1 <grace@example.org>: Recipient address rejected: User unknown")

	var detail emailDetail
	testkit.Eventually(t, 10*time.Second, func() error {
		h.getJSON("/admin/emails/"+adaJob.ID, &detail)
		if detail.Status != events.MailSent || len(detail.Attempts) != 4 {
			return fmt.Errorf("ada's email: %s with %d attempts", detail.Status, len(detail.Attempts))
		}
		return nil
	})
	for i, a := range detail.Attempts {
		want := events.MailDeferred
		if i == 3 {
			want = events.MailSent
		}
		if a.Status != want || a.Attempt != i+1 || a.Detail == "" || strings.Contains(a.Detail, "@") {
			t.Errorf("attempt %d = %+v, want %s with the SMTP reply and no address", i+1, a, want)
		}
	}
	if !strings.HasPrefix(detail.Attempts[0].Detail, "451 4.7.1") || !strings.HasPrefix(detail.Attempts[3].Detail, "250") {
		t.Errorf("SMTP replies: %q … %q", detail.Attempts[0].Detail, detail.Attempts[3].Detail)
	}

	// Grace's email is failed, and a dead letter with its reason.
	var failed struct{ Items []emailSummary }
	testkit.Eventually(t, 10*time.Second, func() error {
		h.getJSON("/admin/events/"+ada.EventID+"/emails?status=failed", &failed)
		if len(failed.Items) != 1 {
			return fmt.Errorf("failed emails: %+v", failed.Items)
		}
		return nil
	})
	if it := failed.Items[0]; it.ID != graceJob.ID || it.Attempts != 1 || it.To != grace.Email {
		t.Errorf("failed email = %+v", it)
	}
	var dead struct {
		Items []deadLetterInfo
		Total int
	}
	h.getJSON("/admin/events/"+ada.EventID+"/dead-letters", &dead)
	if dead.Total != 1 || len(dead.Items) != 1 || dead.Items[0].ID != graceJob.ID || dead.Items[0].Kind != kindConfirmation ||
		!strings.HasPrefix(dead.Items[0].Reason, "550 5.1.1") || strings.Contains(dead.Items[0].Reason, "@") || dead.Items[0].Attempts != 1 {
		t.Fatalf("dead letters = %+v", dead)
	}

	// Replayed (the address was fixed at the relay, say), it goes out again
	// as a new job with the same content; a second replay finds nothing.
	var replay struct {
		Replayed int
		IDs      []string
	}
	h.postJSON("/admin/events/"+ada.EventID+"/dead-letters/replay", nil, http.StatusAccepted, &replay)
	resendID := graceJob.ID + ".resend.1"
	if replay.Replayed != 1 || len(replay.IDs) != 1 || replay.IDs[0] != resendID {
		t.Fatalf("replay = %+v, want %s", replay, resendID)
	}
	jobs = h.waitJobs(3)
	again := jobs[2]
	if again.ID != resendID || again.To != graceJob.To || again.Subject != graceJob.Subject || again.Text != graceJob.Text ||
		again.HTML != graceJob.HTML || len(again.Attachments) != len(graceJob.Attachments) {
		t.Errorf("replayed job %s differs from %s", again.ID, graceJob.ID)
	}
	h.getJSON("/admin/events/"+ada.EventID+"/dead-letters", &dead)
	if dead.Total != 0 {
		t.Errorf("dead letters after the replay: %+v", dead)
	}
	h.postJSON("/admin/events/"+ada.EventID+"/dead-letters/replay", nil, http.StatusAccepted, &replay)
	if replay.Replayed != 0 {
		t.Errorf("second replay = %+v, want nothing", replay)
	}

	// The mailer delivers it: the log shows it sent, linked to the original.
	h.mailerSays(again, events.MailSent, 1, t0.Add(2*time.Hour), "250 2.0.0 Ok")
	testkit.Eventually(t, 10*time.Second, func() error {
		h.getJSON("/admin/emails/"+resendID, &detail)
		if detail.Status != events.MailSent {
			return fmt.Errorf("replayed email: %s", detail.Status)
		}
		return nil
	})
	if detail.ResendOf != graceJob.ID {
		t.Errorf("resend_of = %q, want %s", detail.ResendOf, graceJob.ID)
	}
	h.getJSON("/admin/emails/"+graceJob.ID, &detail)
	if detail.Status != events.MailFailed || len(detail.Resends) != 1 || detail.Resends[0] != resendID {
		t.Errorf("original after the replay: status %s, resends %v", detail.Status, detail.Resends)
	}
	var sent struct{ Items []emailSummary }
	h.getJSON("/admin/events/"+ada.EventID+"/emails?status=sent&to=grace@example.org", &sent)
	if len(sent.Items) != 1 || sent.Items[0].ID != resendID || sent.Items[0].ResendOf != graceJob.ID {
		t.Errorf("grace's sent emails: %+v", sent.Items)
	}

	// An organiser resends Ada's email; a retry of the request with the
	// same Idempotency-Key names the same resend and sends nothing more.
	var first, second struct {
		ID       string
		ResendOf string `json:"resend_of"`
	}
	h.postJSON("/admin/emails/"+adaJob.ID+"/resend", nil, http.StatusAccepted, &first, "Idempotency-Key", "resend-ada")
	h.postJSON("/admin/emails/"+adaJob.ID+"/resend", nil, http.StatusAccepted, &second, "Idempotency-Key", "resend-ada")
	if first.ID != adaJob.ID+".resend.1" || second != first || first.ResendOf != adaJob.ID {
		t.Errorf("resends = %+v then %+v", first, second)
	}
	if jobs = h.waitJobs(4); jobs[3].ID != first.ID || jobs[3].Text != adaJob.Text {
		t.Errorf("resent job = %s", jobs[3].ID)
	}
	if status, _, body := h.do(http.MethodPost, "/admin/emails/no.such.email/resend", adminToken, nil); status != http.StatusNotFound {
		t.Errorf("resend of an unknown email: %d %s", status, body)
	}
}

func TestEmailLogPages(t *testing.T) {
	h := start(t)
	const n = 7
	var eventID string
	for i := range n {
		reg := registration(fmt.Sprintf("01JPAGE%02d", i))
		if i > 0 {
			reg.EventID = eventID
		}
		eventID = reg.EventID
		h.publish(events.RegistrationConfirmed, reg)
	}
	jobs := h.waitJobs(n)
	h.mailerSays(jobs[1], events.MailSent, 1, time.Now(), "250 ok")
	h.mailerSays(jobs[4], events.MailSent, 1, time.Now(), "250 ok")

	type page struct {
		Items      []emailSummary
		NextCursor string `json:"next_cursor"`
	}
	walk := func(query string) []string {
		t.Helper()
		var ids []string
		cursor := ""
		for range n + 1 {
			var p page
			h.getJSON("/admin/events/"+eventID+"/emails?limit=3"+query+cursor, &p)
			if len(p.Items) > 3 {
				t.Fatalf("page of %d, limit 3", len(p.Items))
			}
			for _, it := range p.Items {
				ids = append(ids, it.ID)
			}
			if p.NextCursor == "" {
				return ids
			}
			cursor = "&cursor=" + p.NextCursor
		}
		t.Fatalf("pages never end: %v", ids)
		return nil
	}
	all := walk("")
	slices.Sort(all)
	if want := jobIDs(jobs); !slices.Equal(all, slices.Sorted(slices.Values(want))) {
		t.Errorf("pages hold %v, want each of %v once", all, want)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if sent := walk("&status=sent"); len(sent) != 2 {
			return fmt.Errorf("sent: %v", sent)
		}
		return nil
	})
	if queued := walk("&status=queued&kind=confirmation"); len(queued) != n-2 {
		t.Errorf("queued confirmations: %v", queued)
	}
	if none := walk("&kind=announcement"); len(none) != 0 {
		t.Errorf("announcements: %v", none)
	}

	for query, field := range map[string]string{
		"?limit=0": "limit", "?limit=501": "limit", "?limit=x": "limit", "?cursor=%21%21": "cursor",
		"?cursor=bm9wZQ": "cursor", "?kind=Con%20firm": "kind", "?status=bounced": "status",
	} {
		status, body := h.get("/admin/events/"+eventID+"/emails"+query, adminToken)
		var p struct{ Errors []struct{ Field string } }
		_ = json.Unmarshal(body, &p)
		if status != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Field != field {
			t.Errorf("emails%s: %d %s, want 422 naming %s", query, status, body, field)
		}
	}
}
