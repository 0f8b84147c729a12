package main

import (
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/embedded"
)

func TestMessageID(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"go-mail's header", "From: a@b\r\nMessage-ID: <agenda.01J.02K.2@plenary>\r\nSubject: x\r\n\r\nbody", "agenda.01J.02K.2@plenary"},
		{"any case", "message-id:   <x.1@plenary>\r\n\r\n", "x.1@plenary"},
		{"only in the body", "Subject: x\r\n\r\nMessage-ID: <no@plenary>\r\n", ""},
		{"none", "Subject: x\r\n\r\nbody", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := messageID([]byte(tc.raw)); got != tc.want {
				t.Errorf("messageID = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSpanRate(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	s := spanOf([]time.Time{t0.Add(2 * time.Second), t0, t0.Add(time.Second)})
	if s.n != 3 || !s.first.Equal(t0) || s.took() != 2*time.Second {
		t.Fatalf("span = %+v", s)
	}
	if got := s.rate(); got != 1 { // two emails after the first, in two seconds
		t.Errorf("rate = %v, want 1", got)
	}
	if got := spanOf([]time.Time{t0}).rate(); got != 0 {
		t.Errorf("rate of one email = %v, want 0", got)
	}
}

func TestTrackCountsAsEmailsArrive(t *testing.T) {
	b := &bench{arrived: map[string][]time.Time{}, byID: map[string]int{}}
	msg := func(to, id string) {
		t.Helper()
		raw := "Message-ID: <" + id + ">\r\n\r\nbody"
		if err := b.received(embeddedMessage(to, raw)); err != nil {
			t.Fatal(err)
		}
	}
	msg("a@example.org", "1@plenary")
	arrived := b.track(map[string]int{"a@example.org": 2, "b@example.org": 1})
	if got := arrived(); got != 1 {
		t.Fatalf("arrived before = %d, want 1", got)
	}
	msg("a@example.org", "2@plenary")
	msg("a@example.org", "2@plenary") // the same email again: beyond the two wanted
	msg("c@example.org", "3@plenary") // not tracked
	if got := arrived(); got != 2 {
		t.Errorf("arrived = %d, want 2", got)
	}
	if got := b.repeatedEmails(); got != 1 {
		t.Errorf("repeated = %d, want 1", got)
	}
}

func embeddedMessage(to, raw string) embedded.Message {
	return embedded.Message{From: "no-reply@plenary.localhost", To: []string{to}, Data: []byte(raw), At: time.Now()}
}
