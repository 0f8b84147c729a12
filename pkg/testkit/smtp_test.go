package testkit_test

import (
	"errors"
	"net/smtp"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/testkit"
)

// plain is a minimal one-part message.
const plain = "From: noreply@plenary.test\r\nTo: ada@example.org\r\nSubject: You are in\r\n\r\nSee you there.\r\n"

func send(sink *testkit.SMTPSink, to, msg string) error {
	return smtp.SendMail(sink.Addr, nil, "noreply@plenary.test", []string{to}, []byte(msg))
}

// smtpCode returns the reply code of an SMTP error, or 0.
func smtpCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestSMTPSinkRecordsMessages(t *testing.T) {
	sink := testkit.StartSMTP(t)
	if err := send(sink, "ada@example.org", plain); err != nil {
		t.Fatal(err)
	}
	got := sink.WaitFor(t, 1, 5*time.Second)
	m := got[0]
	if m.Subject != "You are in" || m.To != "ada@example.org" || strings.TrimSpace(m.Text) != "See you there." {
		t.Errorf("email = subject %q to %q text %q", m.Subject, m.To, m.Text)
	}
	if m.Envelope.From != "noreply@plenary.test" || !slices.Equal(m.Envelope.To, []string{"ada@example.org"}) {
		t.Errorf("envelope = from %q to %v", m.Envelope.From, m.Envelope.To)
	}
	if sink.Attempts() != 1 || sink.Connections() != 1 {
		t.Errorf("attempts %d, connections %d; want 1, 1", sink.Attempts(), sink.Connections())
	}
}

func TestSMTPSinkFailTemporarily(t *testing.T) {
	sink := testkit.StartSMTP(t)
	sink.FailTemporarily(2)
	for i, wantCode := range []int{451, 451, 0} {
		err := send(sink, "ada@example.org", plain)
		if code := smtpCode(err); code != wantCode || (wantCode == 0 && err != nil) {
			t.Errorf("send %d = %v (code %d), want code %d", i+1, err, code, wantCode)
		}
	}
	if n := len(sink.WaitFor(t, 1, 5*time.Second)); n != 1 {
		t.Errorf("sink holds %d messages, want the third only", n)
	}
	if sink.Attempts() != 3 {
		t.Errorf("Attempts = %d, want 3", sink.Attempts())
	}
	// The budget is spent: later messages go through.
	if err := send(sink, "ada@example.org", plain); err != nil {
		t.Errorf("fourth send = %v, want it accepted", err)
	}
}

func TestSMTPSinkFailPermanently(t *testing.T) {
	sink := testkit.StartSMTP(t)
	sink.FailPermanently(true)
	for range 2 {
		if err := send(sink, "ada@example.org", plain); smtpCode(err) != 554 {
			t.Errorf("send = %v, want 554", err)
		}
	}
	sink.FailPermanently(false)
	if err := send(sink, "ada@example.org", plain); err != nil {
		t.Fatalf("send after FailPermanently(false) = %v", err)
	}
	sink.WaitFor(t, 1, 5*time.Second)
}

func TestSMTPSinkWaitForFailsOnExtraEmails(t *testing.T) {
	sink := testkit.StartSMTP(t)
	for range 2 {
		if err := send(sink, "ada@example.org", plain); err != nil {
			t.Fatal(err)
		}
	}
	tb := runFake(func(tb *fakeTB) { sink.WaitFor(tb, 1, time.Second) })
	if !tb.Failed() || !strings.Contains(tb.fatal, "2 emails arrived") {
		t.Fatalf("WaitFor(1) with 2 emails: failed %v (%q), want a failure naming the count", tb.Failed(), tb.fatal)
	}
	tb = runFake(func(tb *fakeTB) { sink.WaitFor(tb, 3, 100*time.Millisecond) })
	if !tb.Failed() || !strings.Contains(tb.fatal, "2 of 3") {
		t.Fatalf("WaitFor(3) with 2 emails: failed %v (%q), want a failure naming the count", tb.Failed(), tb.fatal)
	}
}

func TestSMTPSinkDelay(t *testing.T) {
	sink := testkit.StartSMTP(t)
	sink.SetDelay(150 * time.Millisecond)
	start := time.Now()
	if err := send(sink, "ada@example.org", plain); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
		t.Errorf("send took %s with a 150ms delay", elapsed)
	}
}

// multipart is a confirmation as the notification service sends it:
// alternative text and HTML in quoted-printable, with a base64 attachment.
const multipart = `From: Plenary <noreply@plenary.test>
To: Ada <ada@example.org>
Subject: =?UTF-8?Q?Caf=C3=A9_confirm=C3=A9?=
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 is confirmed. Manage: https://plenary.test/r/abc?x=3D1 on one lo=
ng line
--alt
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

<p>Caf=C3=A9 <a href=3D"https://plenary.test/r/abc">manage</a></p>
--alt--
--mixed
Content-Type: text/calendar; name="invite.ics"
Content-Disposition: attachment; filename="invite.ics"
Content-Transfer-Encoding: base64

QkVHSU46VkNB
TEVOREFS
--mixed--
`

func TestParseEmail(t *testing.T) {
	tests := []struct {
		name        string
		raw         string
		subject     string
		to          string
		text        string
		html        string
		attachments map[string]string
	}{
		{
			name:    "plain",
			raw:     plain,
			subject: "You are in", to: "ada@example.org", text: "See you there.",
		},
		{
			name:    "single part base64",
			raw:     "Subject: Hi\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\nQ2Fmw6kgb3Blbg==\r\n",
			subject: "Hi", text: "Café open",
		},
		{
			name:    "alternative with quoted-printable and an attachment",
			raw:     strings.ReplaceAll(multipart, "\n", "\r\n"),
			subject: "Café confirmé", to: "Ada <ada@example.org>",
			text:        "Café is confirmed. Manage: https://plenary.test/r/abc?x=1 on one long line",
			html:        `<p>Café <a href="https://plenary.test/r/abc">manage</a></p>`,
			attachments: map[string]string{"invite.ics": "BEGIN:VCALENDAR"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := testkit.ParseEmail([]byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if e.Subject != tc.subject || e.To != tc.to {
				t.Errorf("subject %q to %q, want %q %q", e.Subject, e.To, tc.subject, tc.to)
			}
			if got := strings.TrimSpace(e.Text); got != tc.text {
				t.Errorf("text = %q, want %q", got, tc.text)
			}
			if got := strings.TrimSpace(e.HTML); got != tc.html {
				t.Errorf("html = %q, want %q", got, tc.html)
			}
			if len(e.Attachments) != len(tc.attachments) {
				t.Errorf("attachments = %v, want %v", e.Attachments, tc.attachments)
			}
			for name, want := range tc.attachments {
				if got := string(e.Attachments[name]); got != want {
					t.Errorf("attachment %s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestParseEmailRejectsGarbage(t *testing.T) {
	if _, err := testkit.ParseEmail([]byte("no header separator and no colon")); err == nil {
		t.Fatal("ParseEmail accepted a message without headers")
	}
}

func TestSMTPSinkParsesWhatItReceives(t *testing.T) {
	sink := testkit.StartSMTP(t)
	if err := send(sink, "ada@example.org", strings.ReplaceAll(multipart, "\n", "\r\n")); err != nil {
		t.Fatal(err)
	}
	m := sink.WaitFor(t, 1, 5*time.Second)[0]
	if m.Subject != "Café confirmé" || !strings.Contains(m.HTML, `href="https://plenary.test/r/abc"`) || len(m.Attachments) != 1 {
		t.Errorf("parsed = subject %q html %q attachments %d", m.Subject, m.HTML, len(m.Attachments))
	}
}
