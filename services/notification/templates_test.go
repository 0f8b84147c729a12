package notification

import (
	"bytes"
	"context"
	"html"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
)

func newTestTemplates(t *testing.T, fromName string) *templates {
	t.Helper()
	tmpl, err := newTemplates(fromName)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// contains reports a missing piece of an email, the HTML part's escaping
// taken into account.
func contains(t *testing.T, out rendered, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out.text, w) {
			t.Errorf("text part lacks %q:\n%s", w, out.text)
		}
		if !strings.Contains(out.html, html.EscapeString(w)) {
			t.Errorf("HTML part lacks %q:\n%s", w, out.html)
		}
	}
}

func lacks(t *testing.T, out rendered, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		if strings.Contains(out.subject+"\n"+out.text, u) || strings.Contains(out.html, html.EscapeString(u)) {
			t.Errorf("email contains %q:\n%s", u, out.text)
		}
	}
}

func TestSpan(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	vienna := i18n.ZoneOrUTC("Europe/Vienna")
	at := func(day, hour, minute int) time.Time { return time.Date(2020, 11, day, hour, minute, 0, 0, time.UTC) }
	tests := []struct {
		name, lang string
		start, end time.Time
		loc        *time.Location
		want       string
	}{
		{"one day", "en", at(9, 8, 0), at(9, 16, 30), vienna, "Monday 9 November 2020, 09:00–17:30 CET"},
		{"two days", "en", at(9, 8, 0), at(10, 16, 30), vienna, "Monday 9 November 2020, 09:00 – Tuesday 10 November 2020, 17:30 CET"},
		{"no end", "en", at(9, 8, 0), time.Time{}, vienna, "Monday 9 November 2020, 09:00 CET"},
		{"summer time", "en", time.Date(2020, 7, 1, 7, 0, 0, 0, time.UTC), time.Date(2020, 7, 1, 9, 0, 0, 0, time.UTC), vienna,
			"Wednesday 1 July 2020, 09:00–11:00 CEST"},
		{"summer time ends", "en", time.Date(2020, 10, 24, 8, 0, 0, 0, time.UTC), time.Date(2020, 10, 26, 8, 0, 0, 0, time.UTC), vienna,
			"Saturday 24 October 2020, 10:00 CEST – Monday 26 October 2020, 09:00 CET"},
		{"day changes in the zone", "en", at(9, 23, 30), at(10, 1, 0), i18n.ZoneOrUTC("Asia/Tokyo"),
			"Tuesday 10 November 2020, 08:30–10:00 JST"},
		{"unknown zone reads as UTC", "en", at(9, 8, 0), at(9, 9, 0), i18n.ZoneOrUTC("Mars/Olympus"), "Monday 9 November 2020, 08:00–09:00 UTC"},
		{"German", "de", at(9, 8, 0), at(9, 16, 30), vienna, "Montag, 9. November 2020, 09:00–17:30 CET"},
		{"Russian", "ru", at(9, 8, 0), at(10, 16, 30), vienna, "понедельник, 9 ноября 2020, 09:00 – вторник, 10 ноября 2020, 17:30 CET"},
		{"Spanish", "es", at(9, 8, 0), at(9, 16, 30), vienna, "lunes, 9 de noviembre de 2020, 09:00–17:30 CET"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := span(tmpl.langs[tc.lang], tc.start, tc.end, tc.loc); got != tc.want {
				t.Errorf("span = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEmailLang(t *testing.T) {
	tests := []struct {
		participant string
		event       []string
		want        string
	}{
		{"de-AT", []string{"en"}, "de"},
		{"EN_gb", nil, "en"},
		{"ru", []string{"de", "en"}, "ru"}, // the participant's own, if Plenary speaks it
		{"", []string{"it", "en"}, "it"},
		{"pt-BR", []string{"pt", "es", "fr"}, "es"},
		{"xx-YY", nil, "en"},
		{"<script>", []string{"klingon"}, "en"},
	}
	for _, tc := range tests {
		if got := emailLang(tc.participant, tc.event...); got != tc.want {
			t.Errorf("emailLang(%q, %v) = %s, want %s", tc.participant, tc.event, got, tc.want)
		}
	}
	reg := registration("01JLANG")
	reg.Locale, reg.Event.Locales = "pt", []string{"fr", "de"}
	if got := letterFor(kindConfirmation, reg).Locale; got != "fr" {
		t.Errorf("letterFor picked %s, want the event's first language, fr", got)
	}
}

// kindCase is one kind of email as the tests render it.
type kindCase struct {
	kind string
	reg  func(*events.Registration) // before letterFor
	more func(*letter)              // after
	// marker is the catalog message only this kind says; join whether a
	// confirmed online attendee gets their join link in it.
	marker string
	join   bool
}

var sessionStart = time.Date(2020, 11, 9, 9, 0, 0, 0, time.UTC) // 10:00 in Vienna, 18:00 in Tokyo

func kindCases() []kindCase {
	status := func(s, reason string) func(*events.Registration) {
		return func(r *events.Registration) { r.Status, r.Reason = s, reason }
	}
	return []kindCase{
		{kindConfirmation, nil, nil, "email.confirmation.intro", true},
		{kindWaitlisted, status(events.StatusWaitlisted, ""), nil, "email.waitlisted.intro", false},
		{kindPending, status(events.StatusPending, ""), nil, "email.pending.intro", false},
		{kindApproved, status(events.StatusConfirmed, "approved"), nil, "email.approved.intro", true},
		{kindRejected, status(events.StatusRejected, "full"), nil, "email.rejected.full", false},
		{kindDuplicate, status(events.StatusConfirmed, "duplicate_attempt"), nil, "email.duplicate.intro", false},
		{kindPromoted, nil, nil, "email.promoted.intro", true},
		{kindCancelled, status(events.StatusCancelled, "participant"), nil, "email.cancelled.by_participant", false},
		{kindSwitched, status(events.StatusConfirmed, "mode_switched"), nil, "email.switched.intro", true},
		{kindLinks, status(events.StatusConfirmed, "link_requested"), nil, "email.links.intro", true},
		{kindReminder, nil, func(l *letter) {
			l.Offset = time.Hour
			l.Sessions = []sessionLine{{ID: "s1", Title: "Opening", Start: sessionStart, End: sessionStart.Add(time.Hour),
				Room: "Festsaal", JoinURL: "https://plenary.test/j/join-s?session=s1&x=1"}}
		}, "email.reminder.intro", true},
		{kindAgenda, nil, func(l *letter) {
			l.Sessions = []sessionLine{{ID: "s1", Title: "Opening", Start: sessionStart, End: sessionStart.Add(time.Hour),
				Room: "Festsaal", Kinds: []string{events.ChangeRelocated},
				Before: &events.Session{Title: "Opening", StartsAt: sessionStart, EndsAt: sessionStart.Add(time.Hour), Room: "Kleiner Saal"}}}
		}, "email.agenda_changed.calendar", false},
		{kindAnnouncement, nil, func(l *letter) {
			l.Subject, l.Body, l.UnsubscribeURL = "Lunch", "Lunch is at noon.", "https://plenary.test/u/unsub-token"
		}, "email.announcement.intro", false},
	}
}

func (c kindCase) letter(reg events.Registration, lang string) letter {
	reg.Locale = lang
	if c.reg != nil {
		c.reg(&reg)
	}
	l := letterFor(c.kind, reg)
	if c.more != nil {
		c.more(&l)
	}
	return l
}

// Every kind renders in every language from the catalogs, never falling
// back to English, with the links that belong and no others.
func TestEveryKindInEveryLanguage(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	if got, want := len(kindCases()), len(allKinds); got != want {
		t.Fatalf("the test covers %d kinds, there are %d", got, want)
	}
	for _, c := range kindCases() {
		for _, lang := range i18n.Supported {
			t.Run(c.kind+"/"+lang, func(t *testing.T) {
				reg := registration("01JKIND")
				l := c.letter(reg, lang)
				out, err := tmpl.render(l)
				if err != nil {
					t.Fatal(err)
				}
				v, en := tmpl.view(l), tmpl.view(c.letter(reg, "en"))
				marker, subject := v.T(c.marker), v.T("email."+c.kind+".subject")
				if c.kind == kindReminder {
					subject = v.T("email.reminder.subject")
				}
				if lang != "en" && marker == en.T(c.marker) {
					t.Errorf("%s is in English: %q", c.marker, marker)
				}
				if lang != "en" && c.kind != kindAnnouncement && subject == en.T("email."+c.kind+".subject") {
					t.Errorf("the subject is in English: %q", subject)
				}
				if out.subject != subject || strings.ContainsAny(out.subject, "\r\n") {
					t.Errorf("subject = %q, want %q", out.subject, subject)
				}
				contains(t, out, marker, v.T("email.greeting"), "Vienna Roundtable")
				if !strings.Contains(out.html, `<html lang="`+lang+`">`) {
					t.Errorf("HTML part is not marked as %s", lang)
				}
				if c.kind == kindCancelled {
					contains(t, out, reg.Event.PublicURL)
					lacks(t, out, reg.ManageURL)
				} else {
					contains(t, out, reg.ManageURL)
				}
				if c.join {
					contains(t, out, reg.JoinURL)
				} else {
					lacks(t, out, reg.JoinURL)
				}
			})
		}
	}
}

// The join link goes only to confirmed online attendees, however the
// letter is made; sessions' own links likewise.
func TestJoinLinkOnlyForConfirmedOnline(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	for _, c := range kindCases() {
		if !c.join {
			continue
		}
		for _, who := range []struct {
			name         string
			mode, status string
		}{
			{"in person", events.ModeInPerson, events.StatusConfirmed},
			{"online, waiting", events.ModeOnline, events.StatusWaitlisted},
			{"online, pending", events.ModeOnline, events.StatusPending},
		} {
			t.Run(c.kind+"/"+who.name, func(t *testing.T) {
				reg := registration("01JJOIN")
				l := c.letter(reg, "de")
				l.Mode, l.Status = who.mode, who.status
				l.JoinURL = reg.JoinURL // as a careless letter would have it
				out, err := tmpl.render(l)
				if err != nil {
					t.Fatal(err)
				}
				lacks(t, out, "/j/")
				contains(t, out, reg.ManageURL)
			})
		}
	}
	reg := registration("01JJOIN")
	reg.Status = events.StatusWaitlisted
	if l := letterFor(kindWaitlisted, reg); l.JoinURL != "" {
		t.Errorf("letterFor gave a waiting registration its join link")
	}
}

// The invite comes with a confirmed seat only, and parses back.
func TestInvite(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	for _, c := range kindCases() {
		for _, mode := range []string{events.ModeOnline, events.ModeInPerson} {
			t.Run(c.kind+"/"+mode, func(t *testing.T) {
				reg := registration("01JICS")
				reg.Mode, reg.Locale = mode, "it"
				if c.reg != nil {
					c.reg(&reg)
				}
				out, err := tmpl.renderRegistration(c.kind, reg, time.Date(2020, 10, 1, 12, 0, 0, 0, time.UTC))
				if err != nil {
					t.Fatal(err)
				}
				want := slices.Contains([]string{kindConfirmation, kindPromoted, kindApproved}, c.kind)
				if got := len(out.attachments) == 1; got != want {
					t.Fatalf("invite attached %v, want %v", got, want)
				}
				if said := strings.Contains(out.text, "invite.ics"); said != want {
					t.Errorf("text mentions the invite %v, want %v", said, want)
				}
				if !want {
					return
				}
				checkInvite(t, out.attachments[0], reg)
			})
		}
	}
	reg := registration("01JICS")
	reg.Status, reg.Reason = events.StatusWaitlisted, "approved"
	if out, err := tmpl.renderRegistration(kindApproved, reg, time.Now()); err != nil || len(out.attachments) != 0 {
		t.Errorf("approved onto the waiting list: %d attachments, %v", len(out.attachments), err)
	}
}

func checkInvite(t *testing.T, att attachment, reg events.Registration) {
	t.Helper()
	if att.Name != "invite.ics" || att.ContentType != icsContentType {
		t.Errorf("attachment %s (%s)", att.Name, att.ContentType)
	}
	cal, err := ics.ParseCalendar(bytes.NewReader(att.Data))
	if err != nil {
		t.Fatalf("invite.ics does not parse: %v", err)
	}
	evs := cal.Events()
	if len(evs) != 1 {
		t.Fatalf("invite.ics has %d events", len(evs))
	}
	ev := evs[0]
	start, err1 := ev.GetStartAt()
	end, err2 := ev.GetEndAt()
	if err1 != nil || err2 != nil || !start.Equal(reg.Event.StartsAt) || !end.Equal(reg.Event.EndsAt) {
		t.Errorf("invite runs %v–%v (%v, %v), want %v–%v", start, end, err1, err2, reg.Event.StartsAt, reg.Event.EndsAt)
	}
	if uid := ev.GetProperty(ics.ComponentPropertyUniqueId); uid == nil || uid.Value != reg.ID+"@plenary" {
		t.Errorf("UID = %v", uid)
	}
	wantLoc := "Online"
	if reg.Mode == events.ModeInPerson {
		wantLoc = "Palais Ferstel, Strauchgasse 4, 1010 Wien"
	}
	if loc := ev.GetProperty(ics.ComponentPropertyLocation); loc == nil || loc.Value != wantLoc {
		t.Errorf("LOCATION = %v, want %s", loc, wantLoc)
	}
	if s := string(att.Data); strings.Contains(s, "/r/") || strings.Contains(s, "/j/") {
		t.Errorf("invite.ics carries a personal link:\n%s", s)
	}
}

// An event at 09:00 in Vienna reads 17:00 for an online attendee in Tokyo,
// in the attendee's language; an in-person attendee sees the event's zone
// only.
func TestTimesInBothZones(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	reg := registration("01JZONES")
	reg.Timezone = "Asia/Tokyo"
	reg.Event.EndsAt = reg.Event.StartsAt.Add(3 * time.Hour) // 09:00–12:00 in Vienna
	tests := []struct {
		lang, mode   string
		want, unwant []string
	}{
		{"en", events.ModeOnline, []string{"Monday 9 November 2020, 09:00–12:00 CET",
			"Monday 9 November 2020, 17:00–20:00 JST (your time zone, Asia/Tokyo)", "10:00–11:00 CET", "18:00–19:00 JST"}, nil},
		{"de", events.ModeOnline, []string{"Montag, 9. November 2020, 09:00–12:00 CET",
			"Montag, 9. November 2020, 17:00–20:00 JST (Ihre Zeitzone, Asia/Tokyo)", "18:00–19:00 JST"}, nil},
		{"ru", events.ModeOnline, []string{"понедельник, 9 ноября 2020, 09:00–12:00 CET",
			"понедельник, 9 ноября 2020, 17:00–20:00 JST (ваш часовой пояс, Asia/Tokyo)", "18:00–19:00 JST"}, nil},
		{"fr", events.ModeInPerson, []string{"lundi 9 novembre 2020, 09:00–12:00 CET", "10:00–11:00 CET", "Palais Ferstel"},
			[]string{"JST", "Asia/Tokyo"}},
	}
	for _, tc := range tests {
		t.Run(tc.lang+"/"+tc.mode, func(t *testing.T) {
			r := reg
			r.Locale, r.Mode = tc.lang, tc.mode
			l := letterFor(kindReminder, r)
			l.Offset = 24 * time.Hour
			l.Sessions = []sessionLine{{ID: "s1", Title: "Opening", Start: sessionStart, End: sessionStart.Add(time.Hour), Room: "Festsaal"}}
			out, err := tmpl.render(l)
			if err != nil {
				t.Fatal(err)
			}
			contains(t, out, tc.want...)
			lacks(t, out, tc.unwant...)
		})
	}
}

func TestRussianPlurals(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	reg := registration("01JPLURAL")
	reg.Locale, reg.Mode = "ru", events.ModeInPerson // the day's agenda counts its sessions
	sessions := func(n int) []sessionLine {
		var ss []sessionLine
		for i := range n {
			start := sessionStart.Add(time.Duration(i) * 10 * time.Minute)
			ss = append(ss, sessionLine{ID: "s", Title: "Доклад", Start: start, End: start.Add(10 * time.Minute), Kinds: []string{events.ChangeAdded}})
		}
		return ss
	}
	for _, tc := range []struct {
		n                int
		offset           time.Duration
		reminder, notice string
		in               string
	}{
		{1, time.Hour, "Программа дня: 1 сессия", "изменилась 1 сессия, которая вас касается", "начнётся через 1 час"},
		{2, 2 * time.Hour, "Программа дня: 2 сессии", "изменились 2 сессии, которые вас касаются", "начнётся через 2 часа"},
		{5, 5 * time.Hour, "Программа дня: 5 сессий", "изменилось 5 сессий, которые вас касаются", "начнётся через 5 часов"},
		{21, 21 * time.Hour, "Программа дня: 21 сессия", "изменилась 21 сессия, которая вас касается", "начнётся через 21 час"},
		{3, 30 * time.Minute, "Программа дня: 3 сессии", "изменились 3 сессии", "начнётся через 30 минут"},
		{1, 48 * time.Hour, "Программа дня: 1 сессия", "изменилась 1 сессия", "начнётся через 2 дня"},
	} {
		l := letterFor(kindReminder, reg)
		l.Offset, l.Sessions = tc.offset, sessions(tc.n)
		out, err := tmpl.render(l)
		if err != nil {
			t.Fatal(err)
		}
		contains(t, out, tc.reminder, tc.in)
		if !strings.Contains(out.subject, tc.in) {
			t.Errorf("subject %q lacks %q", out.subject, tc.in)
		}
		l = letterFor(kindAgenda, reg)
		l.Sessions = sessions(tc.n)
		if out, err = tmpl.render(l); err != nil {
			t.Fatal(err)
		}
		contains(t, out, tc.notice)
	}
}

var hrefs = regexp.MustCompile(`href="([^"]*)"`)

// A long PUBLIC_URL gives links that work: whole, on a line of their own in
// the text part, whole and correctly escaped in the HTML's hrefs.
func TestLongLinksStayWhole(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	public := "https://events.example.org/" + strings.Repeat("plenary-hybrid_conference/", 11)
	public = public[:300]
	reg := registration("01JLONG")
	reg.Event.PublicURL = public
	reg.ManageURL = public + "/r/" + strings.Repeat("m", 43)
	reg.JoinURL = public + "/j/" + strings.Repeat("j", 43)
	session := reg.JoinURL + "?session=01JSESSION&lang=de"
	for _, lang := range []string{"en", "ru"} {
		reg.Locale = lang
		l := letterFor(kindReminder, reg)
		l.Offset = time.Hour
		l.Sessions = []sessionLine{{ID: "s1", Title: "Opening", Start: sessionStart, End: sessionStart.Add(time.Hour), JoinURL: session}}
		out, err := tmpl.render(l)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(out.text, "\n")
		for _, link := range []string{reg.ManageURL, reg.JoinURL, session, l.AgendaURL} {
			if !slices.ContainsFunc(lines, func(s string) bool { return strings.TrimSpace(s) == link }) {
				t.Errorf("%s: text part lacks a line with the whole link %s:\n%s", lang, link, out.text)
			}
		}
		var got []string
		for _, m := range hrefs.FindAllStringSubmatch(out.html, -1) {
			got = append(got, html.UnescapeString(m[1]))
		}
		for _, link := range []string{reg.ManageURL, reg.JoinURL, session, l.AgendaURL} {
			if !slices.Contains(got, link) {
				t.Errorf("%s: no href is the whole link %s; hrefs: %q", lang, link, got)
			}
		}
		if !strings.Contains(out.html, `&amp;lang=de"`) {
			t.Errorf("the & in an href is not escaped:\n%s", out.html)
		}
	}
}

// Participants' and organisers' words are escaped in HTML, shown as
// written in the text part, and cannot break a header.
func TestUserTextEscapedAndKeptOutOfHeaders(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	reg := registration("01JEVIL")
	reg.Name = "<script>alert(1)</script>\r\nBcc: victim@example.org"
	reg.Event.Title = "Roundtable <b>& friends</b>\nBcc: victim@example.org"
	for _, lang := range []string{"en", "fr", "ru"} {
		reg.Locale = lang
		tests := []struct {
			kind  string
			more  func(*letter)
			texts []string // as the text part must show them
		}{
			{kindConfirmation, nil, nil},
			{kindRejected, func(l *letter) { l.Reason = `<img src=x onerror="steal()"> Speakers only` }, []string{`<img src=x onerror="steal()"> Speakers only`}},
			{kindAgenda, func(l *letter) {
				l.Sessions = []sessionLine{{Title: "<script>s()</script>", Start: sessionStart, End: sessionStart.Add(time.Hour),
					Kinds: []string{events.ChangeRenamed}, Before: &events.Session{Title: "<i>old</i>"}}}
			}, []string{"<script>s()</script>", "<i>old</i>"}},
			{kindAnnouncement, func(l *letter) {
				l.Subject = "Lunch\r\nBcc: victim@example.org"
				l.Body = "<script>evil()</script>\r\nSecond line\r\n\r\nNew paragraph"
				l.UnsubscribeURL = "https://plenary.test/u/tok"
			}, []string{"<script>evil()</script>\nSecond line\n\nNew paragraph"}},
		}
		for _, tc := range tests {
			t.Run(lang+"/"+tc.kind, func(t *testing.T) {
				l := letterFor(tc.kind, reg)
				if tc.more != nil {
					tc.more(&l)
				}
				out, err := tmpl.render(l)
				if err != nil {
					t.Fatal(err)
				}
				for _, markup := range []string{"<script", "<b>", "<img", "<i>"} {
					if strings.Contains(out.html, markup) {
						t.Errorf("HTML carries markup %s:\n%s", markup, out.html)
					}
				}
				if !strings.Contains(out.html, "&lt;b&gt;&amp; friends&lt;/b&gt;") {
					t.Errorf("HTML lacks the escaped title:\n%s", out.html)
				}
				for field, v := range map[string]string{"subject": out.subject, "to name": out.toName} {
					if strings.ContainsAny(v, "\r\n") {
						t.Errorf("%s %q carries a line break", field, v)
					}
				}
				if out.toName != "<script>alert(1)</script> Bcc: victim@example.org" {
					t.Errorf("to name = %q", out.toName)
				}
				if !strings.Contains(out.subject, "Roundtable <b>& friends</b> Bcc: victim@example.org") {
					t.Errorf("subject = %q", out.subject)
				}
				if strings.Contains(out.text, "\nBcc:") {
					t.Errorf("a name or title starts a line of its own:\n%s", out.text)
				}
				for _, w := range tc.texts {
					if !strings.Contains(out.text, w) {
						t.Errorf("text part lacks %q as written:\n%s", w, out.text)
					}
				}
			})
		}
	}
}

// An agenda notice says per session what changed, old → new, in the
// recipient's language.
func TestAgendaNoticeWording(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	reg := registration("01JNOTICE")
	reg.Mode, reg.Locale = events.ModeInPerson, "de"
	was := &events.Session{Title: "Eröffnung", StartsAt: sessionStart.Add(-time.Hour), EndsAt: sessionStart, Room: "Kleiner Saal"}
	l := letterFor(kindAgenda, reg)
	l.AgendaURL = reg.Event.PublicURL + "/agenda"
	l.Sessions = []sessionLine{
		{ID: "s1", Title: "Eröffnung", Start: sessionStart, End: sessionStart.Add(time.Hour), Room: "Festsaal",
			Kinds: []string{events.ChangeMoved, events.ChangeRelocated}, Before: was},
		{ID: "s2", Title: "Podium", Start: sessionStart, End: sessionStart.Add(time.Hour), Cancelled: true,
			Kinds: []string{events.ChangeCancelled}, JoinURL: "https://plenary.test/j/x?session=s2"},
		{ID: "s3", Title: "Workshop", Start: sessionStart.Add(24 * time.Hour), End: sessionStart.Add(25 * time.Hour),
			Room: "Raum 3", Kinds: []string{events.ChangeAdded}},
		{ID: "s4", Title: "Keynote", Start: sessionStart, End: sessionStart.Add(time.Hour), Kinds: []string{events.ChangeMoved}},
	}
	out, err := tmpl.render(l)
	if err != nil {
		t.Fatal(err)
	}
	if out.subject != "Programmänderungen: Vienna Roundtable" {
		t.Errorf("subject = %q", out.subject)
	}
	contains(t, out,
		"4 Programmpunkte, die Sie betreffen",
		"Montag, 9. November 2020", "Dienstag, 10. November 2020",
		"Eröffnung", "Zeit: 09:00–10:00 CET → 10:00–11:00 CET", "Raum: Kleiner Saal → Festsaal",
		"Podium", "Workshop", "Raum: Raum 3",
		"Geändert: Zeit", // a move the notice has no "before" for
		"Die angehängte Kalenderdatei", l.AgendaURL, reg.ManageURL)
	lacks(t, out, "/j/", "Room", "Time:")
	for _, mark := range []string{"[Geändert] Eröffnung", "[Abgesagt] Podium", "[Neu] Workshop"} {
		if !strings.Contains(out.text, mark) {
			t.Errorf("text part lacks %q:\n%s", mark, out.text)
		}
	}
	for _, mark := range []string{">Geändert</span> <strong>Eröffnung", ">Abgesagt</span> <strong>Podium", ">Neu</span> <strong>Workshop"} {
		if !strings.Contains(out.html, mark) {
			t.Errorf("HTML part lacks %q:\n%s", mark, out.html)
		}
	}
	// Sessions come in time order, each day headed once.
	if strings.Count(out.text, "Montag, 9. November 2020") != 1 || strings.Index(out.text, "Keynote") > strings.Index(out.text, "Workshop") {
		t.Errorf("sessions out of order:\n%s", out.text)
	}
}

// A reminder to an in-person attendee: the venue and the day's agenda with
// rooms, no links into meetings.
func TestReminderInPerson(t *testing.T) {
	tmpl := newTestTemplates(t, "")
	reg := registration("01JREMIND")
	reg.Mode, reg.Locale = events.ModeInPerson, "es"
	l := letterFor(kindReminder, reg)
	l.Offset = 24 * time.Hour
	l.Sessions = []sessionLine{
		{ID: "s1", Title: "Apertura", Start: sessionStart, End: sessionStart.Add(time.Hour), Room: "Festsaal", JoinURL: "https://plenary.test/j/x?session=s1"},
		{ID: "s2", Title: "Panel", Start: sessionStart.Add(time.Hour), End: sessionStart.Add(2 * time.Hour), Room: "Kleiner Saal"},
	}
	out, err := tmpl.render(l)
	if err != nil {
		t.Fatal(err)
	}
	if out.subject != "Recordatorio: Vienna Roundtable empieza en 24 horas" {
		t.Errorf("subject = %q", out.subject)
	}
	if !strings.Contains(out.text, "\nDónde: Palais Ferstel, Strauchgasse 4, 1010 Wien\n") {
		t.Errorf("text part lacks the venue:\n%s", out.text)
	}
	contains(t, out, "Palais Ferstel", "Strauchgasse 4, 1010 Wien", "El programa del día: 2 sesiones",
		"10:00–11:00 CET", "Sala: Festsaal", "11:00–12:00 CET", "Sala: Kleiner Saal", reg.ManageURL)
	lacks(t, out, "/j/", "JST", "EST")
}

func TestRenderSameZoneShowsOneTime(t *testing.T) {
	tmpl := newTestTemplates(t, "The Roundtable team")
	reg := registration("01JZONE")
	reg.Timezone = "Europe/Berlin" // another name, the same clock as Vienna
	out, err := tmpl.renderRegistration(kindConfirmation, reg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lacks(t, out, "your time zone", "Europe/Berlin")
	if !strings.Contains(out.text, "\nThe Roundtable team\n") || !strings.Contains(out.html, "The Roundtable team") {
		t.Errorf("MAIL_FROM_NAME does not sign the email:\n%s", out.text)
	}
	if strings.Contains(out.text, "\n\n\n") || strings.Contains(out.text, " \n") {
		t.Errorf("text part has stray blank lines or trailing spaces:\n%q", out.text)
	}

	// An event without a time yet: no times, no invite, still an email.
	reg.Event.StartsAt, reg.Event.EndsAt = time.Time{}, time.Time{}
	out, err = tmpl.renderRegistration(kindConfirmation, reg, time.Now())
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
	long := "https://p.example/" + strings.Repeat("x", 1000)
	for in, want := range map[string]string{
		long:                           long,
		" https://p.example/r/tok\r\n": "https://p.example/r/tok",
		"https://p.example/r/\ntok":    "https://p.example/r/tok",
		"https://p.example/" + strings.Repeat("x", maxURL): "",
	} {
		if got := cleanURL(in); got != want {
			t.Errorf("cleanURL(%.40q) = %.40q, want %.40q", in, got, want)
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
	tmpl := newTestTemplates(t, "")
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
		{"approved onto a seat", events.RegistrationConfirmed,
			with(func(r *events.Registration) { r.Reason = "approved" }), kindApproved,
			[]string{"have approved your registration", "https://p.example/j/join", "https://p.example/r/tok"}, nil, true},
		{"approved onto the waiting list", events.RegistrationWaitlisted,
			with(func(r *events.Registration) { r.Status, r.Reason = events.StatusWaitlisted, "approved" }), kindApproved,
			[]string{"have approved your registration", "waiting list", "https://p.example/r/tok"}, []string{"/j/join"}, false},
		{"rejected by the organisers", events.RegistrationRejected,
			with(func(r *events.Registration) { r.Status, r.Reason = events.StatusRejected, "organizer" }), kindRejected,
			[]string{"could not accept your registration"}, []string{"/j/join", "Note from the organisers"}, false},
		{"waiting for another mode", events.RegistrationWaitlisted,
			with(func(r *events.Registration) { r.Status, r.Reason = events.StatusWaitlisted, "mode_switched" }), kindWaitlisted,
			[]string{"You asked to attend Roundtable online", "waiting list"}, []string{"/j/join"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, ok := emailKind(tc.typ, tc.reg.Reason)
			if !ok || kind != tc.kind {
				t.Fatalf("emailKind(%s, %s) = %q %v, want %s", tc.typ, tc.reg.Reason, kind, ok, tc.kind)
			}
			out, err := tmpl.renderRegistration(kind, tc.reg, time.Now())
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
