package notification

import (
	"encoding/json"
	"fmt"
	"net/http"
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
	for _, path := range []string{"/admin/events/e1/emails", "/admin/emails/x"} {
		for _, token := range []string{"", "wrong-token"} {
			if status, _ := h.get(path, token); status != http.StatusUnauthorized {
				t.Errorf("GET %s with token %q: %d, want 401", path, token, status)
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
