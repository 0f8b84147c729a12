package embedded

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one email an SMTP server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	At   time.Time
}

// Fault tells the SMTP server how to answer the next DATA command.
type Fault int

// Faults the SMTP server can be told to inject.
const (
	// Accept answers 250.
	Accept Fault = iota
	// Temporary answers 451 (try again later).
	Temporary
	// Permanent answers 554 (do not try again).
	Permanent
)

// SMTPServer is a small SMTP server that hands each accepted message to a
// callback. A fault function, if set, decides per message whether to accept
// it, and a delay slows every message down, to test the mailer's handling of
// a failing or slow relay.
type SMTPServer struct {
	Addr string

	srv     *smtp.Server
	deliver func(Message) error

	mu    sync.Mutex
	fault func() Fault
	delay time.Duration
	conns int
}

// StartSMTP listens on addr ("127.0.0.1:0" for a free port) and calls deliver
// for every message; an error from deliver is answered with 451.
func StartSMTP(addr string, deliver func(Message) error) (*SMTPServer, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded smtp: %w", err)
	}
	s := &SMTPServer{Addr: ln.Addr().String(), deliver: deliver}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		return &session{s: s}, nil
	}))
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 32 << 20
	s.srv.AllowInsecureAuth = true
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// SetFault installs f to decide how each following message is answered; nil
// accepts everything.
func (s *SMTPServer) SetFault(f func() Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// SetDelay makes the server wait d before answering each DATA command.
func (s *SMTPServer) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Connections counts the SMTP connections opened so far.
func (s *SMTPServer) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Close stops the server and closes open connections.
func (s *SMTPServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}

func (s *SMTPServer) answer() (Fault, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := Accept
	if s.fault != nil {
		f = s.fault()
	}
	return f, s.delay
}

type session struct {
	s    *SMTPServer
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

var (
	errTemporary = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later (injected)"}
	errPermanent = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "rejected (injected)"}
)

func (ss *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	fault, delay := ss.s.answer()
	if delay > 0 {
		time.Sleep(delay)
	}
	switch fault {
	case Temporary:
		return errTemporary
	case Permanent:
		return errPermanent
	}
	msg := Message{From: ss.from, To: append([]string(nil), ss.to...), Data: buf.Bytes(), At: time.Now()}
	if err := ss.s.deliver(msg); err != nil {
		// go-smtp answers 554 to anything but an *smtp.SMTPError, so the
		// reason goes into the 451's message rather than an errors.Join.
		return &smtp.SMTPError{Code: errTemporary.Code, EnhancedCode: errTemporary.EnhancedCode, Message: "try again later: " + err.Error()}
	}
	return nil
}
