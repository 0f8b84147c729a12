package notification

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

// person is a registration's status, mode and (optionally) locale.
type person [3]string

// enrol publishes registrations of one event and returns them by name
// (their address is <name>@example.org).
func (h *harness) enrol(eventID string, people map[string]person) map[string]events.Registration {
	h.t.Helper()
	out := map[string]events.Registration{}
	for name, a := range people {
		reg := registration("01J" + strings.ToUpper(name))
		reg.EventID, reg.Event.ID = eventID, eventID
		reg.Status, reg.Mode, reg.Email = a[0], a[1], name+"@example.org"
		if a[2] != "" {
			reg.Locale = a[2]
		}
		typ := map[string]string{
			events.StatusConfirmed: events.RegistrationConfirmed, events.StatusWaitlisted: events.RegistrationWaitlisted,
			events.StatusPending: events.RegistrationPending,
		}[reg.Status]
		h.publish(typ, reg)
		out[name] = reg
	}
	return out
}

type accepted struct {
	ID         string
	Recipients int
	Queued     bool
}

// announce posts an announcement and returns its 202 answer.
func (h *harness) announce(eventID, subject, body, audience, key string) accepted {
	h.t.Helper()
	var out accepted
	var headers []string
	if key != "" {
		headers = []string{"Idempotency-Key", key}
	}
	h.postJSON("/admin/events/"+eventID+"/announcements",
		map[string]string{"subject": subject, "body": body, "audience": audience}, http.StatusAccepted, &out, headers...)
	return out
}

// unsubscribeURL is the link in a job's List-Unsubscribe header.
func unsubscribeURL(t *testing.T, job events.MailJob) string {
	t.Helper()
	m := regexp.MustCompile(`^<(http://localhost:8080/u/[A-Za-z0-9._-]+)>$`).FindStringSubmatch(job.Headers["List-Unsubscribe"])
	if m == nil || job.Headers["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" {
		t.Fatalf("job %s headers = %v, want RFC 8058 one-click unsubscribe", job.ID, job.Headers)
	}
	return m[1]
}

func TestAnnouncementReachesItsAudienceOnce(t *testing.T) {
	h := start(t)
	const eventID = "evt-01JANNOUNCE"
	people := h.enrol(eventID, map[string]person{
		"olga":  {events.StatusConfirmed, events.ModeOnline, "ru"},
		"omar":  {events.StatusConfirmed, events.ModeOnline},
		"ines":  {events.StatusConfirmed, events.ModeInPerson},
		"wanda": {events.StatusWaitlisted, events.ModeOnline},
		"pavel": {events.StatusPending, events.ModeOnline},
	})
	cancelled := registration("01JCANCELLED")
	cancelled.EventID, cancelled.Event.ID, cancelled.Email = eventID, eventID, "carl@example.org"
	h.publish(events.RegistrationConfirmed, cancelled)
	cancelled.Version, cancelled.Status = 2, events.StatusCancelled
	h.publish(events.RegistrationCancelled, cancelled)
	transactional := h.waitJobs(7)
	for _, j := range transactional {
		if len(j.Headers) != 0 {
			t.Errorf("%s job %s carries headers %v; transactional emails carry no List-Unsubscribe", j.Kind, j.ID, j.Headers)
		}
	}

	const subject, body = "Room change for the opening", "The opening panel moves to the Festsaal.\nCoffee from 8:30."
	ann := h.announce(eventID, subject, body, events.ModeOnline, "opening-room")
	if ann.ID == "" || ann.Recipients != 2 || !ann.Queued {
		t.Fatalf("announcement = %+v, want 2 recipients queued", ann)
	}
	// The organiser's client retries (a timeout, a double click): the same
	// answer, nothing sent twice.
	if again := h.announce(eventID, subject, body, events.ModeOnline, "opening-room"); again != ann {
		t.Errorf("retry = %+v, want %+v", again, ann)
	}
	jobs := h.waitJobs(9)[7:]
	var to []string
	for _, j := range jobs {
		to = append(to, j.To)
		if j.Kind != kindAnnouncement || j.EventID != eventID || j.ID != jobID("announcement:"+ann.ID+":"+j.RegistrationID) {
			t.Errorf("job %+v", j)
		}
		link := unsubscribeURL(t, j)
		if !strings.Contains(j.Text, "Festsaal") || !strings.Contains(j.Text, link) || !strings.Contains(j.HTML, link) {
			t.Errorf("job %s lacks the body or the unsubscribe link in its text and HTML:\n%s", j.ID, j.Text)
		}
		if !strings.Contains(j.Subject, subject) {
			t.Errorf("subject %q lacks %q", j.Subject, subject)
		}
		// Each in their language: the frame around the organiser's words.
		if ru := regexp.MustCompile(`\p{Cyrillic}`).MatchString(j.Text); ru != (j.RegistrationID == people["olga"].ID) {
			t.Errorf("%s's announcement in Russian: %v\n%s", j.To, ru, j.Text)
		}
	}
	slices.Sort(to)
	if !slices.Equal(to, []string{"olga@example.org", "omar@example.org"}) {
		t.Errorf("announcement went to %v, want the two confirmed online participants", to)
	}

	// To everyone: the in-person participant too, and a new id without a key.
	all := h.announce(eventID, "Programme online", "The programme is online.", audienceAll, "")
	if all.Recipients != 3 || all.ID == ann.ID {
		t.Errorf("announcement to all = %+v, want 3 recipients", all)
	}
	h.waitJobs(12)

	var list struct{ Items []announcementInfo }
	h.getJSON("/admin/events/"+eventID+"/announcements", &list)
	if len(list.Items) != 2 || list.Items[0].ID != all.ID || list.Items[1].ID != ann.ID || list.Items[1].Recipients != 2 ||
		list.Items[1].QueuedAt == nil || list.Items[1].Audience != events.ModeOnline {
		t.Errorf("announcements = %+v", list.Items)
	}
}

// An announcement accepted but stopped before its emails were queued (a
// crash) is finished by the repeat of the request, for the recipients
// fixed when it was accepted.
func TestAnnouncementStoppedHalfWayIsFinishedByItsRepeat(t *testing.T) {
	h := start(t)
	const eventID = "evt-01JHALFWAY"
	people := h.enrol(eventID, map[string]person{
		"anna": {events.StatusConfirmed, events.ModeInPerson},
		"bert": {events.StatusConfirmed, events.ModeInPerson},
	})
	h.waitJobs(2)

	// What the crash left: the announcement, for Anna only.
	const key = "crashed"
	raw, _ := json.Marshal(map[string]string{"subject": "Badges", "body": "Collect your badge at the desk.", "audience": events.ModeInPerson})
	path := "/admin/events/" + eventID + "/announcements"
	sum := sha256.Sum256([]byte(key + "\x00" + path + "\x00" + string(raw)))
	id := hex.EncodeToString(sum[:])[:32]
	_, err := h.db().Collection(announcementsCollection).InsertOne(context.Background(), announcement{
		ID: id, EventID: eventID, Subject: "Badges", Body: "Collect your badge at the desk.", Audience: events.ModeInPerson,
		Recipients: []string{people["anna"].ID}, Count: 1, CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := h.do(http.MethodPost, path, adminToken, raw, "Idempotency-Key", key)
	var got accepted
	_ = json.Unmarshal(body, &got)
	if status != http.StatusAccepted || got.ID != id || got.Recipients != 1 || !got.Queued {
		t.Fatalf("repeat: %d %s", status, body)
	}
	if j := h.waitJobs(3)[2]; j.RegistrationID != people["anna"].ID || j.Kind != kindAnnouncement {
		t.Errorf("finished with %+v", j)
	}
}

func TestAnnouncementInput(t *testing.T) {
	h := start(t)
	const eventID = "evt-01JINPUT"
	h.enrol(eventID, map[string]person{"ida": {events.StatusConfirmed, events.ModeOnline}})
	h.waitJobs(1)
	path := "/admin/events/" + eventID + "/announcements"
	for name, tc := range map[string]struct {
		body  map[string]any
		field string
	}{
		"no subject":        {map[string]any{"body": "b", "audience": "all"}, "subject"},
		"blank subject":     {map[string]any{"subject": "  ", "body": "b", "audience": "all"}, "subject"},
		"two-line subject":  {map[string]any{"subject": "a\r\nBcc: x@example.org", "body": "b", "audience": "all"}, "subject"},
		"long subject":      {map[string]any{"subject": strings.Repeat("s", 201), "body": "b", "audience": "all"}, "subject"},
		"no body":           {map[string]any{"subject": "s", "audience": "all"}, "body"},
		"long body":         {map[string]any{"subject": "s", "body": strings.Repeat("b", 10_001), "audience": "all"}, "body"},
		"no audience":       {map[string]any{"subject": "s", "body": "b"}, "audience"},
		"unknown audience":  {map[string]any{"subject": "s", "body": "b", "audience": "speakers"}, "audience"},
		"body with control": {map[string]any{"subject": "s", "body": "b\x00", "audience": "all"}, "body"},
	} {
		t.Run(name, func(t *testing.T) {
			raw, _ := json.Marshal(tc.body)
			status, header, body := h.do(http.MethodPost, path, adminToken, raw)
			var p struct {
				Errors []struct{ Field string }
			}
			_ = json.Unmarshal(body, &p)
			if status != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Field != tc.field ||
				!strings.HasPrefix(header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("%d %s, want a 422 problem naming %s", status, body, tc.field)
			}
		})
	}
	// The limits themselves are fine.
	if got := h.announce(eventID, strings.Repeat("s", 200), strings.Repeat("b", 10_000), events.ModeOnline, ""); got.Recipients != 1 {
		t.Errorf("announcement at the limits = %+v", got)
	}
	if status, _, body := h.do(http.MethodPost, path, adminToken, []byte(`{"subject":`)); status != http.StatusBadRequest {
		t.Errorf("broken JSON: %d %s, want 400", status, body)
	}
	status, _, body := h.do(http.MethodPost, "/admin/events/evt-nobody/announcements", adminToken,
		[]byte(`{"subject":"s","body":"b","audience":"all"}`))
	if status != http.StatusNotFound {
		t.Errorf("unknown event: %d %s, want 404", status, body)
	}
	if status, _, _ := h.do(http.MethodPost, path, "", []byte(`{"subject":"s","body":"b","audience":"all"}`)); status != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", status)
	}
	h.waitJobs(2)
}
