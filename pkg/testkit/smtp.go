package testkit

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/embedded"
)

// SMTPSink is an SMTP server that records what it accepts and can be told to
// fail.
type SMTPSink struct {
	Addr string
	srv  *embedded.SMTPServer

	mu   sync.Mutex
	msgs []embedded.Message

	failTemp atomic.Int64
	failPerm atomic.Bool
	attempts atomic.Int64
}

// StartSMTP starts a sink for t, closed when t ends.
func StartSMTP(t testing.TB) *SMTPSink {
	t.Helper()
	s := &SMTPSink{}
	srv, err := embedded.StartSMTP("127.0.0.1:0", func(m embedded.Message) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.msgs = append(s.msgs, m)
		return nil
	})
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	srv.SetFault(func() embedded.Fault {
		s.attempts.Add(1)
		if s.failPerm.Load() {
			return embedded.Permanent
		}
		if s.failTemp.Add(-1) >= 0 {
			return embedded.Temporary
		}
		s.failTemp.Store(0)
		return embedded.Accept
	})
	s.srv, s.Addr = srv, srv.Addr
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// FailTemporarily answers the next n messages with 451.
func (s *SMTPSink) FailTemporarily(n int) { s.failTemp.Store(int64(n)) }

// FailPermanently answers every message with 554 while on is true.
func (s *SMTPSink) FailPermanently(on bool) { s.failPerm.Store(on) }

// SetDelay makes every message take d before it is answered.
func (s *SMTPSink) SetDelay(d time.Duration) { s.srv.SetDelay(d) }

// Connections counts the SMTP connections opened to the sink.
func (s *SMTPSink) Connections() int { return s.srv.Connections() }

// Attempts counts DATA commands received, accepted or not.
func (s *SMTPSink) Attempts() int { return int(s.attempts.Load()) }

// Messages returns the accepted messages, parsed.
func (s *SMTPSink) Messages(t testing.TB) []Email {
	t.Helper()
	s.mu.Lock()
	raw := append([]embedded.Message(nil), s.msgs...)
	s.mu.Unlock()
	out := make([]Email, 0, len(raw))
	for _, m := range raw {
		e, err := ParseEmail(m.Data)
		if err != nil {
			t.Fatalf("testkit: unparseable email: %v", err)
		}
		e.Envelope = m
		out = append(out, e)
	}
	return out
}

// WaitFor polls until exactly n messages were accepted and returns them. It
// fails if more arrive, or fewer by timeout.
func (s *SMTPSink) WaitFor(t testing.TB, n int, timeout time.Duration) []Email {
	t.Helper()
	Eventually(t, timeout, func() error {
		s.mu.Lock()
		got := len(s.msgs)
		s.mu.Unlock()
		if got > n {
			t.Fatalf("testkit: %d emails arrived, want %d", got, n)
		}
		if got < n {
			return fmt.Errorf("%d of %d emails arrived", got, n)
		}
		return nil
	})
	return s.Messages(t)
}

// Email is a parsed email.
type Email struct {
	Envelope embedded.Message
	Header   mail.Header
	Subject  string
	To       string
	Text     string
	HTML     string
	// Attachments maps file names to their content.
	Attachments map[string][]byte
}

// ParseEmail parses a MIME message into its text and HTML parts.
func ParseEmail(data []byte) (Email, error) {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return Email{}, err
	}
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(m.Header.Get("Subject"))
	e := Email{Header: m.Header, Subject: subject, To: m.Header.Get("To"), Attachments: map[string][]byte{}}
	err = e.walk(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), "", m.Body)
	return e, err
}

func (e *Email) walk(contentType, encoding, disposition string, body io.Reader) error {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mediaType = "text/plain"
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := e.walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p.Header.Get("Content-Disposition"), p); err != nil {
				return err
			}
		}
	}
	content, err := decodeBody(encoding, body)
	if err != nil {
		return err
	}
	if _, dparams, err := mime.ParseMediaType(disposition); err == nil && dparams["filename"] != "" {
		e.Attachments[dparams["filename"]] = content
		return nil
	}
	switch mediaType {
	case "text/plain":
		e.Text += string(content)
	case "text/html":
		e.HTML += string(content)
	default:
		e.Attachments[params["name"]] = content
	}
	return nil
}
