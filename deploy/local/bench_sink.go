package main

import (
	"bytes"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/embedded"
)

// received is the SMTP sink's handler: it notes when each email arrived,
// by recipient and by Message-ID. The mailer writes Message-ID
// <job id>@plenary, stable across retries, so a Message-ID seen twice is
// an email delivered twice, whatever the recipient.
func (b *bench) received(m embedded.Message) error {
	id := messageID(m.Data)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, to := range m.To {
		b.arrived[to] = append(b.arrived[to], m.At)
		if n, ok := b.tracked[to]; ok && len(b.arrived[to]) <= n {
			b.trackedGot++
		}
	}
	if id != "" {
		b.byID[id]++
		if b.byID[id] > 1 {
			b.repeats++
		}
	}
	return nil
}

// messageID returns the Message-ID of a raw message, or "" when it has none.
func messageID(data []byte) string {
	head := data
	if end := bytes.Index(data, []byte("\r\n\r\n")); end >= 0 {
		head = data[:end]
	}
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(name), "Message-ID") {
			return strings.Trim(strings.TrimSpace(string(value)), "<>")
		}
	}
	return ""
}

// track starts counting the emails that arrive to the addresses in want,
// at most as many per address as wanted, and returns the count so far. It
// counts as they arrive: the waits poll it many times a second, and a scan
// of tens of thousands of addresses each time would cost the system under
// measure a good part of a core. One set is tracked at a time.
func (b *bench) track(want map[string]int) (arrived func() int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tracked, b.trackedGot = make(map[string]int, len(want)), 0
	for addr, n := range want {
		b.tracked[addr] = n
		b.trackedGot += min(n, len(b.arrived[addr]))
	}
	return func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.trackedGot
	}
}

// emailsTo returns when the emails to addr arrived, in arrival order.
func (b *bench) emailsTo(addr string) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.arrived[addr]...)
}

// repeatedEmails counts the emails that arrived with a Message-ID already
// seen: duplicates, over the whole run.
func (b *bench) repeatedEmails() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.repeats
}

// span summarises when a set of emails arrived: how many, and the first
// and last arrival.
type span struct {
	n           int
	first, last time.Time
}

func spanOf(at []time.Time) span {
	s := span{n: len(at)}
	for _, t := range at {
		if s.first.IsZero() || t.Before(s.first) {
			s.first = t
		}
		s.last = later(s.last, t)
	}
	return s
}

// took is first → last.
func (s span) took() time.Duration { return s.last.Sub(s.first) }

// rate is (n − 1) / (last − first): the emails after the first, over the
// time they took, so that the first email's latency does not count.
func (s span) rate() float64 {
	if s.n < 2 {
		return 0
	}
	return perSecond(s.n-1, s.took())
}
