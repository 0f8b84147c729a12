package notification

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

func TestSpan(t *testing.T) {
	tmpl, err := newTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	en := tmpl.locales["en"]
	vienna := zone("Europe/Vienna")
	at := func(day, hour, minute int) time.Time { return time.Date(2020, 11, day, hour, minute, 0, 0, time.UTC) }
	tests := []struct {
		name       string
		start, end time.Time
		loc        *time.Location
		want       string
	}{
		{"one day", at(9, 8, 0), at(9, 16, 30), vienna, "Monday 9 November 2020, 09:00–17:30 CET"},
		{"two days", at(9, 8, 0), at(10, 16, 30), vienna, "Monday 9 November 2020, 09:00 – Tuesday 10 November 2020, 17:30 CET"},
		{"no end", at(9, 8, 0), time.Time{}, vienna, "Monday 9 November 2020, 09:00 CET"},
		{"summer time", time.Date(2020, 7, 1, 7, 0, 0, 0, time.UTC), time.Date(2020, 7, 1, 9, 0, 0, 0, time.UTC), vienna,
			"Wednesday 1 July 2020, 09:00–11:00 CEST"},
		{"day changes in the zone", at(9, 23, 30), at(10, 1, 0), zone("Asia/Tokyo"),
			"Tuesday 10 November 2020, 08:30–10:00 JST"},
		{"unknown zone reads as UTC", at(9, 8, 0), at(9, 9, 0), zone("Mars/Olympus"), "Monday 9 November 2020, 08:00–09:00 UTC"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := en.span(tc.start, tc.end, tc.loc); got != tc.want {
				t.Errorf("span = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPickLocale(t *testing.T) {
	tmpl, err := newTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"en", "EN_gb", "en-US", "fr", "", "xx-YY"} {
		if got := tmpl.pick(code, kindConfirmation).code; got != "en" {
			t.Errorf("pick(%q) = %s, want en (the only locale, and the fallback)", code, got)
		}
	}
}

func TestRenderSameZoneShowsOneTime(t *testing.T) {
	tmpl, err := newTemplates("The Roundtable team")
	if err != nil {
		t.Fatal(err)
	}
	reg := registration("01JZONE")
	reg.Timezone = "Europe/Berlin" // another name, the same clock as Vienna
	out, err := tmpl.render(kindConfirmation, reg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.text, "your time zone") || strings.Contains(out.html, "your time zone") {
		t.Errorf("a zone that reads the same is shown twice:\n%s", out.text)
	}
	if !strings.Contains(out.text, "\nThe Roundtable team\n") || !strings.Contains(out.html, "The Roundtable team") {
		t.Errorf("MAIL_FROM_NAME does not sign the email:\n%s", out.text)
	}
	if strings.Contains(out.text, "\n\n\n") || strings.Contains(out.text, " \n") {
		t.Errorf("text part has stray blank lines or trailing spaces:\n%q", out.text)
	}

	// An event without a time yet: no times, no invite, still an email.
	reg.Event.StartsAt, reg.Event.EndsAt = time.Time{}, time.Time{}
	out, err = tmpl.render(kindConfirmation, reg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(out.attachments) != 0 || strings.Contains(out.text, "When:") || !strings.Contains(out.text, reg.ManageURL) {
		t.Errorf("email for an event without a time:\n%s", out.text)
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"Ada":                           "Ada",
		"  Ada \r\n Lovelace\t":         "Ada Lovelace",
		"x\rBcc: y":                     "x Bcc: y",
		"line\u2028sep\u0085nel\x00nul": "line sep nel nul",
		strings.Repeat("é", 300):        strings.Repeat("é", 200),
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLatestStatus(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := created.Add(time.Minute)
	tests := []struct {
		name         string
		recs         []statusRecord
		want         string
		wantAttempts int
	}{
		{"none", nil, events.MailQueued, 0},
		{"later wins", []statusRecord{
			{ID: "b", Status: events.MailSent, Attempt: 2, At: at.Add(time.Second)},
			{ID: "a", Status: events.MailDeferred, Attempt: 1, At: at},
		}, events.MailSent, 2},
		{"same instant: later attempt wins", []statusRecord{
			{ID: "a", Status: events.MailDeferred, Attempt: 3, At: at},
			{ID: "b", Status: events.MailFailed, Attempt: 2, At: at},
		}, events.MailDeferred, 3},
		{"same instant and attempt: sent wins over deferred", []statusRecord{
			{ID: "a", Status: events.MailSent, Attempt: 1, At: at},
			{ID: "b", Status: events.MailDeferred, Attempt: 1, At: at},
		}, events.MailSent, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs := append([]statusRecord(nil), tc.recs...)
			sortStatuses(recs)
			status, when, attempts := latest(recs, created)
			if status != tc.want || attempts != tc.wantAttempts {
				t.Errorf("latest = %s after %d attempts, want %s after %d", status, attempts, tc.want, tc.wantAttempts)
			}
			if len(recs) == 0 && !when.Equal(created) {
				t.Errorf("queued email updated at %v, want its creation", when)
			}
		})
	}
}

func TestRunNeedsAdminTokens(t *testing.T) {
	err := Run(context.Background(), Config{AdminTokens: []string{"", " "}}, nil)
	if err == nil || !strings.Contains(err.Error(), "ADMIN_TOKENS") {
		t.Fatalf("Run without tokens = %v, want an error naming ADMIN_TOKENS", err)
	}
}

func TestLoadConfig(t *testing.T) {
	t.Setenv("ADMIN_TOKENS", "one,two")
	t.Setenv("MAIL_FROM_NAME", "Plenary")
	t.Setenv("HTTP_ADDR", "")
	t.Setenv("MONGODB_DATABASE", "")
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.AdminTokens, "|") != "one|two" || cfg.MailFromName != "Plenary" ||
		cfg.HTTPAddr != ":8083" || cfg.MongoDatabase != "plenary_notification" {
		t.Errorf("config = %+v", cfg)
	}
}

// The lifecycle's emails: each kind renders with the right words, links and
// attachments, and only a confirmed online registration gets a join link.
func TestLifecycleEmails(t *testing.T) {
	tmpl, err := newTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	base := events.Registration{
		ID: "r1", Name: "Ada", Email: "ada@example.org", Locale: "en", Mode: events.ModeOnline,
		Status: events.StatusConfirmed, ManageURL: "https://p.example/r/tok", JoinURL: "https://p.example/j/join",
		Event: events.Event{Title: "Roundtable", Timezone: "Europe/Vienna", PublicURL: "https://p.example/e/rt",
			StartsAt: time.Date(2030, 11, 9, 8, 0, 0, 0, time.UTC), EndsAt: time.Date(2030, 11, 9, 16, 0, 0, 0, time.UTC)},
	}
	with := func(f func(*events.Registration)) events.Registration { r := base; f(&r); return r }
	tests := []struct {
		name, typ string
		reg       events.Registration
		kind      string
		want      []string
		not       []string
		ics       bool
	}{
		{"promoted online", events.RegistrationPromoted, base, kindPromoted,
			[]string{"seat became free", "https://p.example/j/join", "https://p.example/r/tok"}, nil, true},
		{"cancelled by the participant", events.RegistrationCancelled,
			with(func(r *events.Registration) { r.Status, r.Reason = events.StatusCancelled, "participant" }), kindCancelled,
			[]string{"is cancelled, as you asked", "https://p.example/e/rt"}, []string{"/j/join", "/r/tok"}, false},
		{"cancelled by the organisers", events.RegistrationCancelled,
			with(func(r *events.Registration) { r.Status, r.Reason = events.StatusCancelled, "organizer" }), kindCancelled,
			[]string{"The organisers have cancelled"}, nil, false},
		{"switched to in person", events.RegistrationUpdated,
			with(func(r *events.Registration) { r.Mode, r.Reason = events.ModeInPerson, "mode_switched" }), kindSwitched,
			[]string{"you now attend in person"}, []string{"/j/join"}, false},
		{"links again, waiting online", events.RegistrationLinkRequested,
			with(func(r *events.Registration) { r.Status, r.Reason = events.StatusWaitlisted, "link_requested" }), kindLinks,
			[]string{"https://p.example/r/tok"}, []string{"/j/join"}, false},
		{"links rotated", events.RegistrationUpdated,
			with(func(r *events.Registration) { r.Reason = "links_rotated" }), kindLinks,
			[]string{"no longer work", "https://p.example/j/join"}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, ok := emailKind(tc.typ, tc.reg.Reason)
			if !ok || kind != tc.kind {
				t.Fatalf("emailKind(%s, %s) = %q %v, want %s", tc.typ, tc.reg.Reason, kind, ok, tc.kind)
			}
			out, err := tmpl.render(kind, tc.reg, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, part := range []string{out.subject + "\n" + out.text, out.html} {
				for _, w := range tc.want {
					if !strings.Contains(part, w) {
						t.Errorf("lacks %q:\n%s", w, part)
					}
				}
				for _, w := range tc.not {
					if strings.Contains(part, w) {
						t.Errorf("has %q:\n%s", w, part)
					}
				}
			}
			if got := len(out.attachments) == 1; got != tc.ics {
				t.Errorf("invite attached %v, want %v", got, tc.ics)
			}
		})
	}
	if _, ok := emailKind(events.RegistrationUpdated, "details_changed"); ok {
		t.Error("a change of details sends an email")
	}
}
