package registration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/plenaryhq/plenary/pkg/events"
)

func TestRegistrationPageWorksWithoutJavaScript(t *testing.T) {
	h := newHarness(t)
	h.createEvent("page", func(b map[string]any) {
		b["title"] = "Roundtable <on borders>"
		b["questions"] = []map[string]any{
			{"id": "organisation", "label": "Organisation", "type": "text", "required": true},
			{"id": "panels", "label": "Panels", "type": "multiselect", "options": []string{"Trafficking", "Terrorism"}},
		}
	})

	page := h.pub.Do(t, "GET", "/e/page", nil)
	body := string(page.Body)
	if page.Status != http.StatusOK || !strings.Contains(body, `<form method="post" action="/e/page" novalidate>`) {
		t.Fatalf("event page: %d %s", page.Status, body)
	}
	if !strings.Contains(body, "Roundtable &lt;on borders&gt;") || strings.Contains(body, "<on borders>") {
		t.Fatal("the title is not escaped")
	}
	if !strings.Contains(body, `name="answers.organisation"`) || !strings.Contains(body, `value="Terrorism"`) {
		t.Fatal("the questions are not on the form")
	}

	post := func(form url.Values) (int, string, http.Header) {
		t.Helper()
		r := h.pub.Do(t, "POST", "/e/page", []byte(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
		return r.Status, string(r.Body), r.Header
	}
	status, body, _ := post(url.Values{"name": {"<b>Ada</b>"}, "email": {"not-an-address"}, "mode": {"online"}})
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid form: %d", status)
	}
	for _, want := range []string{"Enter a plain email address", "agree to the privacy notice", "answers.organisation", `value="&lt;b&gt;Ada&lt;/b&gt;"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the form shown again lacks %q", want)
		}
	}

	status, _, hdr := post(url.Values{
		"name": {"Ada Lovelace"}, "email": {"ada@example.org"}, "mode": {"online"}, "consent": {"true"},
		"answers.organisation": {"OSCE"}, "answers.panels": {"Trafficking", "Terrorism"},
	})
	if status != http.StatusSeeOther || hdr.Get("Location") != "/e/page?registered=1&lang=en" {
		t.Fatalf("valid form: %d, Location %q", status, hdr.Get("Location"))
	}
	got := h.waitPublished(events.RegistrationConfirmed, 1)[0]
	if got.Email != "ada@example.org" || got.Mode != events.ModeOnline {
		t.Fatalf("published %+v", got)
	}
	if thanks := h.pub.Do(t, "GET", "/e/page?registered=1", nil); !strings.Contains(string(thanks.Body), "Thank you") {
		t.Fatal("no thank-you after registering")
	}
	if r := h.pub.Do(t, "GET", "/e/nope", nil); r.Status != http.StatusNotFound || !strings.Contains(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("unknown event page: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
}
