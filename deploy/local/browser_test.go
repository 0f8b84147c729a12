package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/plenaryhq/plenary/pkg/testkit"
)

// chromiumPath is where Debian's chromium package puts the browser; .ci/run
// installs it there.
const chromiumPath = "/usr/bin/chromium"

// browser is one headless Chromium tab on a fresh profile.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// startBrowser starts Chromium for t and stops it when t ends. Without
// Chromium the test fails in CI (CI=true) and is skipped elsewhere.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("browser tests need Chromium at %s, and CI=true: install it with "+
				"apt-get update && apt-get install -y chromium (.ci/run does): %v", chromiumPath, err)
		}
		t.Skipf("browser tests need Chromium at %s; install it with "+
			"sudo apt-get update && sudo apt-get install -y chromium", chromiumPath)
	}
	out := &testkit.Buffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		// The pages are served on loopback; nothing else may be reached.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.CombinedOutput(out),
	)
	// Bounds the whole browser session, even if a step hangs.
	life, stopLife := context.WithTimeout(context.Background(), 3*time.Minute)
	alloc, stopAlloc := chromedp.NewExecAllocator(life, opts...)
	ctx, stopTab := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		stopTab()
		stopAlloc()
		stopLife()
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	// A participant in Paris: the form guesses the time zone from the browser.
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride,
		emulation.SetTimezoneOverrideParams{TimezoneID: "Europe/Paris"}); err != nil {
		t.Fatalf("emulate time zone: %v", err)
	}
	return &browser{t: t, ctx: ctx}
}

// step runs actions with a deadline, failing the test with what was tried.
func (b *browser) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// load runs actions that lead to a new page (a navigation, a form
// submission) and returns the status of the page finally shown.
func (b *browser) load(what string, actions ...chromedp.Action[chromedp.Void]) int64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return resp.Status
}

// open navigates to url and fails unless the page answers 200.
func (b *browser) open(url string) {
	b.t.Helper()
	if status := b.load("open "+url, chromedp.Navigate(url)); status != http.StatusOK {
		b.t.Fatalf("open %s: status %d", url, status)
	}
}

// submit clicks the submit button of the form that sel finds.
func (b *browser) submit(sel string) int64 {
	b.t.Helper()
	return b.load("submit "+sel, chromedp.Click(chromedp.CSS(sel+` button[type=submit]`)))
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text returns the text of the first element sel finds, "" if none.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%q)?.textContent ?? "").trim()`, sel))
}

// field returns what the manage page shows beside the term label.
func (b *browser) field(label string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(Array.from(document.querySelectorAll("dt"))
		.find(dt => dt.textContent.trim() === %q)?.nextElementSibling?.textContent ?? "").trim()`, label))
}

// want fails the test unless the page's sel shows want.
func (b *browser) want(sel, want string) {
	b.t.Helper()
	if got := b.text(sel); got != want {
		b.t.Fatalf("%s on %s: %q, want %q", sel, b.url(), got, want)
	}
}

// wantLang fails the test unless the page is in lang.
func (b *browser) wantLang(lang string) {
	b.t.Helper()
	if got := eval[string](b, `document.documentElement.lang`); got != lang {
		b.t.Fatalf("%s: <html lang=%q>, want %q", b.url(), got, lang)
	}
}

func (b *browser) url() string { return eval[string](b, `location.href`) }

// labelled checks that every form control a person fills in has a label
// the browser associates with it (label for=id or an enclosing label, or
// a fieldset's legend), that every label for= names a control, and that
// ids are unique, so that screen readers announce each field.
func (b *browser) labelled() {
	b.t.Helper()
	problems := eval[[]string](b, `(() => {
		const out = [];
		for (const el of document.querySelectorAll("input, select, textarea")) {
			if (["hidden", "submit", "button"].includes(el.type)) continue;
			const fs = el.closest("fieldset");
			if (el.labels.length === 0 && !(fs && fs.querySelector("legend")))
				out.push("no label: " + el.outerHTML);
		}
		for (const l of document.querySelectorAll("label[for]")) {
			if (!l.control) out.push("label for a missing control: " + l.outerHTML);
		}
		const seen = new Set();
		for (const el of document.querySelectorAll("[id]")) {
			if (seen.has(el.id)) out.push("duplicate id: " + el.id);
			seen.add(el.id);
		}
		return out;
	})()`)
	for _, p := range problems {
		b.t.Errorf("%s: %s", b.url(), p)
	}
}

// TestBrowserParticipantRegistersManagesAndCancels walks a French-speaking
// participant through the pages in Chromium: the form with its errors, the
// confirmation email's manage link, changes, a switch, a refused and then a
// confirmed cancellation, and the promotion of the person waiting.
func TestBrowserParticipantRegistersManagesAndCancels(t *testing.T) {
	b := startBrowser(t)
	e := startStack(t)
	const slug, ada, grace = "salon-hybride", "ada@example.org", "grace@example.org"
	eventID := e.createSmallEvent(slug)

	// 1. The form, in French, sent empty and then filled in.
	b.open(e.stack.URL + "/e/" + slug + "?lang=fr")
	b.wantLang("fr")
	b.want(`label[for=name]`, "Nom complet")
	b.want(`#locale option:checked`, "Français") // the emails' language follows the page's
	b.labelled()

	if status := b.submit(`form[action="/e/` + slug + `"]`); status != http.StatusUnprocessableEntity {
		t.Fatalf("empty form: status %d, want 422", status)
	}
	summary := eval[[]string](b, `Array.from(document.querySelectorAll("[role=alert] a")).map(a => a.getAttribute("href"))`)
	if got, want := strings.Join(summary, " "), "#name #email #mode #q-org #consent"; got != want {
		t.Errorf("error summary links to %q, want %q (the fields in form order)", got, want)
	}
	for _, id := range []string{"name", "email", "mode", "q-org", "consent"} {
		if b.text("#"+id+"-err") == "" {
			t.Errorf("no error beside #%s", id)
		}
		if target := eval[bool](b, fmt.Sprintf(`!!document.getElementById(%q)`, id)); !target {
			t.Errorf("the summary links to #%s, which is not on the page", id)
		}
	}
	b.want(`#name-err`, "Ce champ est obligatoire.")
	b.want(`#consent-err`, "Nous ne pouvons vous inscrire que si vous acceptez la politique de confidentialité.")
	if inv := eval[string](b, `document.getElementById("name").getAttribute("aria-describedby")`); inv != "name-err" {
		t.Errorf("#name aria-describedby=%q, want name-err", inv)
	}
	b.labelled()

	b.step("fill in the form",
		chromedp.SendKeys(chromedp.ID("name"), "Ada Lovelace"),
		chromedp.SendKeys(chromedp.ID("email"), ada),
		chromedp.Click(chromedp.CSS(`input[name=mode][value=in_person]`)),
		chromedp.SendKeys(chromedp.ID("q-org"), "Analytical Society"),
		chromedp.Click(chromedp.CSS(`input[name=consent]`)),
	)
	if status := b.submit(`form[action="/e/` + slug + `"]`); status != http.StatusOK {
		t.Fatalf("filled form: status %d, want 200", status)
	}
	b.want(`.flash[role=status] h2`, "Merci")

	// 2. The confirmation email's manage link opens the registration.
	adaLink := e.manageLinkFor(ada)
	b.open(adaLink)
	b.wantLang("fr") // the locale chosen on the form; the browser asks for English
	for label, want := range map[string]string{"Statut": "Confirmée", "Nom": "Ada Lovelace", "Participation": "en présentiel"} {
		if got := b.field(label); got != want {
			t.Errorf("manage page %s: %q, want %q", label, got, want)
		}
	}
	if tz := eval[string](b, `document.getElementById("timezone").value`); tz != "Europe/Paris" {
		t.Errorf("time zone %q, want Europe/Paris (the browser's, guessed on the form)", tz)
	}
	b.labelled()

	// 3. Change the name, switch to online and back.
	b.step("change the name", chromedp.Clear(chromedp.ID("name")), chromedp.SendKeys(chromedp.ID("name"), "Ada King"))
	b.submitManage("save")
	b.want(`.flash[role=status]`, "Vos modifications sont enregistrées.")
	if got := b.field("Nom"); got != "Ada King" {
		t.Errorf("name after saving: %q, want Ada King", got)
	}
	b.submitManage("switch")
	if got := b.field("Participation"); got != "en ligne" {
		t.Errorf("after switching to online: %q, want en ligne", got)
	}
	if b.text(`a[href*="/j/"]`) == "" {
		t.Error("an online participant's page lacks the join link")
	}
	// Back in person, so that Ada holds the seat Grace is to wait for.
	b.submitManage("switch")
	if got := b.field("Participation"); got != "en présentiel" {
		t.Errorf("after switching back: %q, want en présentiel", got)
	}

	e.registerWaiting(slug, grace)
	e.waitStats(eventID, "Grace waits for the seat", func(s eventStats) bool {
		return s.ByMode["in_person"]["confirmed"] == 1 && s.Waitlist["in_person"] == 1
	})
	graceLink := e.manageLinkFor(grace)

	// 4. Cancel without ticking the box: the server refuses, in French, and
	// says so beside the box and in the summary (the forms leave checking
	// to the server, whose words are in the page's language).
	if status := b.submitManage("cancel"); status != http.StatusUnprocessableEntity {
		t.Fatalf("cancel without the box: status %d, want 422", status)
	}
	b.want(`#confirm-cancel-err`, "Cochez la case pour confirmer.")
	if got := b.text(`[role=alert] a[href="#confirm-cancel"]`); !strings.Contains(got, "Cochez la case pour confirmer.") {
		t.Errorf("error summary %q lacks the cancel box's error", got)
	}
	if got := b.field("Statut"); got != "Confirmée" {
		t.Errorf("after the refused cancellation the status is %q, want Confirmée", got)
	}
	b.labelled()

	b.step("tick the box", chromedp.Click(chromedp.CSS(`form:has(input[name=action][value=cancel]) input[name=confirm]`)))
	b.submitManage("cancel")
	b.want(`.flash[role=status]`, "Votre inscription est annulée.")
	if got := b.field("Statut"); got != "Annulée" {
		t.Errorf("after cancelling: status %q, want Annulée", got)
	}

	// Ada's seat goes to Grace, who was waiting for it.
	e.waitStats(eventID, "Grace promoted", func(s eventStats) bool {
		return s.ByMode["in_person"]["confirmed"] == 1 && s.ByMode["in_person"]["cancelled"] == 1 &&
			s.Waitlist["in_person"] == 0
	})
	b.open(graceLink)
	if got := b.field("Status"); got != "Confirmed" {
		t.Errorf("Grace's page: status %q, want Confirmed", got)
	}
}

// submitManage submits the manage page's form for action and returns the
// status of the page shown next; any status but 200 and 422 fails.
func (b *browser) submitManage(action string) int64 {
	b.t.Helper()
	status := b.submit(`form:has(input[name=action][value=` + action + `])`)
	if status != http.StatusOK && status != http.StatusUnprocessableEntity {
		b.t.Fatalf("manage %s: status %d", action, status)
	}
	if status == http.StatusOK && !strings.Contains(b.url(), "done=") {
		b.t.Fatalf("manage %s: landed on %s, not on a notice", action, b.url())
	}
	return status
}

// createSmallEvent creates an event with one in-person seat, a waiting
// list, unlimited online seats and one required question.
func (e *e2e) createSmallEvent(slug string) string {
	e.t.Helper()
	return e.postEvent(map[string]any{
		"slug": slug, "title": "Salon hybride", "timezone": "Europe/Paris",
		"starts_at":    time.Now().Add(48 * time.Hour).Format(time.RFC3339),
		"ends_at":      time.Now().Add(56 * time.Hour).Format(time.RFC3339),
		"venue":        map[string]any{"name": "Palais des congrès"},
		"online":       map[string]any{"join_url": "https://meet.example.org/salon"},
		"capacity":     map[string]any{"in_person": 1, "online": 0},
		"registration": map[string]any{"waitlist": true},
		"questions":    []map[string]any{{"id": "org", "label": "Organisation", "type": "text", "required": true}},
		"locales":      []string{"en", "fr"},
	})
}

// registerWaiting registers addr in person by the API, willing to wait.
func (e *e2e) registerWaiting(slug, addr string) {
	e.t.Helper()
	r := e.pub.Do(e.t, "POST", "/api/events/"+slug+"/registrations", map[string]any{
		"name": "Grace Hopper", "email": addr, "mode": "in_person", "consent": true,
		"waitlist_ok": true, "answers": map[string]any{"org": "US Navy"},
	})
	if r.Status != http.StatusAccepted {
		e.t.Fatalf("register %s: %d %s", addr, r.Status, r.Body)
	}
}

// manageLinkFor waits for the first email to addr and returns its manage link.
func (e *e2e) manageLinkFor(addr string) string {
	e.t.Helper()
	var link string
	testkit.Eventually(e.t, 20*time.Second, func() error {
		for _, m := range e.smtp.Messages(e.t) {
			if len(m.Envelope.To) == 1 && m.Envelope.To[0] == addr {
				if link = manageLink.FindString(m.Text); link == "" {
					e.t.Fatalf("no manage link in the email to %s:\n%s", addr, m.Text)
				}
				return nil
			}
		}
		return fmt.Errorf("no email to %s yet", addr)
	})
	return link
}

// eventStats is the part of GET /admin/events/{id}/stats the test reads.
type eventStats struct {
	ByMode   map[string]map[string]int `json:"by_mode"`
	Waitlist map[string]int            `json:"waitlist"`
}

// waitStats polls the event's stats until ok holds.
func (e *e2e) waitStats(eventID, what string, ok func(eventStats) bool) {
	e.t.Helper()
	testkit.Eventually(e.t, 20*time.Second, func() error {
		r := e.admin.Do(e.t, "GET", "/admin/events/"+eventID+"/stats", nil)
		var s eventStats
		if r.Status == http.StatusOK {
			r.JSON(e.t, &s)
			if ok(s) {
				return nil
			}
		}
		return fmt.Errorf("%s: stats %d %s", what, r.Status, r.Body)
	})
}
