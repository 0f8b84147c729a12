package mailer

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestJobHeadersAreOnTheMessage(t *testing.T) {
	h := newHarness(t)
	h.start()
	announcement := testJob(1)
	announcement.Kind = "announcement"
	announcement.Headers = map[string]string{
		"List-Unsubscribe":      "<https://plenary.example/u/tok-123>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
	}
	transactional := testJob(2)
	injected := testJob(3)
	injected.Headers = map[string]string{"List-Unsubscribe": "<https://x.example/u>\r\nBcc: victim@example.org"}
	h.publish(announcement, transactional)
	// On its own: a dead letter of a job stored by an atomic batch fails
	// today (see TestDeadLetterOfAJobPublishedInABatch).
	h.publish(injected)

	msgs := h.smtp.WaitFor(t, 2, 15*time.Second)
	h.waitStatus(injected.ID, events.MailFailed)
	for _, m := range msgs {
		switch m.Subject {
		case announcement.Subject:
			if got := m.Header.Get("List-Unsubscribe"); got != announcement.Headers["List-Unsubscribe"] {
				t.Errorf("List-Unsubscribe %q, want %q", got, announcement.Headers["List-Unsubscribe"])
			}
			if got := m.Header.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
				t.Errorf("List-Unsubscribe-Post %q", got)
			}
		case transactional.Subject:
			if got := m.Header.Get("List-Unsubscribe"); got != "" {
				t.Errorf("a transactional email carries List-Unsubscribe %q", got)
			}
		default:
			t.Errorf("unexpected email %q", m.Subject)
		}
		if len(m.Envelope.To) != 1 || m.Header.Get("Bcc") != "" {
			t.Errorf("%s: recipients %v, Bcc %q", m.Subject, m.Envelope.To, m.Header.Get("Bcc"))
		}
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := h.deadLetters(); n != 1 {
			return fmt.Errorf("DLQ holds %d messages, want the injected job", n)
		}
		return nil
	})
}

func TestComposeRefusesHeadersThatCouldInject(t *testing.T) {
	tests := map[string]map[string]string{
		"CR LF in value":      {"List-Unsubscribe": "<https://x.example/u>\r\nBcc: a@example.org"},
		"bare LF in value":    {"List-Unsubscribe": "<https://x.example/u>\nBcc: a@example.org"},
		"NUL in value":        {"X-Tag": "a\x00b"},
		"colon in name":       {"X-Evil: 1\r\nBcc": "a@example.org"},
		"space in name":       {"List Unsubscribe": "x"},
		"replaces To":         {"to": "a@example.org"},
		"replaces Message-ID": {"Message-ID": "<other@example.org>"},
		"content header":      {"Content-Type": "text/html"},
		"empty name":          {"": "x"},
		"overlong value":      {"X-Long": strings.Repeat("a", 901)},
	}
	for name, headers := range tests {
		t.Run(name, func(t *testing.T) {
			job := testJob(1)
			job.Headers = headers
			if _, err := compose("Plenary <no-reply@example.org>", job); !bus.IsPermanent(err) {
				t.Fatalf("compose = %v, want a permanent error", err)
			}
		})
	}
}

func TestComposeEncodesLineBreaksInTheSubject(t *testing.T) {
	job := testJob(1)
	job.Subject = "Hello\r\nBcc: victim@example.org"
	msg, err := compose("Plenary <no-reply@example.org>", job)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	email, err := testkit.ParseEmail(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if email.Header.Get("Bcc") != "" {
		t.Errorf("the subject injected a Bcc header:\n%s", buf.String())
	}
	if !strings.HasPrefix(email.Subject, "Hello") {
		t.Errorf("subject %q", email.Subject)
	}
}
