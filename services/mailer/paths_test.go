package mailer

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// strictServer speaks just enough SMTP to take messages, and refuses, as
// Mailpit does, a MAIL FROM or RCPT TO whose path is not in angle brackets
// (RFC 5321 §4.1.2). It refuses the recipient <refused@…> (550) and DATA
// without a recipient (554), as Postfix does. With pipelining it offers
// PIPELINING (RFC 2920) and counts the MAIL commands that came with their
// RCPT and DATA already behind them.
type strictServer struct {
	ln         net.Listener
	pipelining bool
	mu         sync.Mutex
	commands   []string
	accepted   int
	pipelined  int
}

func startStrictServer(t *testing.T, pipelining bool) *strictServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &strictServer{ln: ln, pipelining: pipelining}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *strictServer) serve(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	reply := func(line string) { _, _ = w.WriteString(line + "\r\n"); _ = w.Flush() }
	reply("220 strict ESMTP")
	recipients := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		upper := strings.ToUpper(line)
		s.mu.Lock()
		s.commands = append(s.commands, line)
		if strings.HasPrefix(upper, "MAIL FROM:") && r.Buffered() > 0 {
			s.pipelined++
		}
		s.mu.Unlock()
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO" && s.pipelining:
			reply("250-strict")
			reply("250 PIPELINING")
		case verb == "EHLO" || verb == "HELO":
			reply("250 strict")
		case strings.HasPrefix(upper, "MAIL FROM:"), strings.HasPrefix(upper, "RCPT TO:"):
			if path := line[strings.Index(line, ":")+1:]; !strings.HasPrefix(path, "<") || !strings.Contains(path, ">") {
				reply("501 5.5.4 Syntax error in parameters or arguments")
				continue
			}
			if strings.HasPrefix(upper, "MAIL FROM:") {
				recipients = 0
				reply("250 OK")
				continue
			}
			if strings.HasPrefix(upper, "RCPT TO:<REFUSED@") {
				reply("550 5.1.1 no such user")
				continue
			}
			recipients++
			reply("250 OK")
		case verb == "DATA" && recipients == 0:
			reply("554 5.5.1 no valid recipients")
		case verb == "DATA":
			reply("354 go ahead")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			s.mu.Lock()
			s.accepted++
			s.mu.Unlock()
			reply("250 queued")
		case verb == "QUIT":
			reply("221 bye")
			return
		default:
			reply("250 OK")
		}
	}
}

func (s *strictServer) count() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, append([]string(nil), s.commands...)
}

// startWithStrictServer runs the mailer with one connection to a strict
// server (stopped when the test ends).
func startWithStrictServer(t *testing.T, pipelining bool) (*harness, *strictServer) {
	t.Helper()
	h := newHarness(t)
	h.cfg.Workers = 1
	strict := startStrictServer(t, pipelining)
	h.cfg.SMTP.Addr = strict.ln.Addr().String()
	h.start()
	return h, strict
}

func (s *strictServer) pipelinedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pipelined
}

// TestPathsInAngleBrackets: the mailer's envelope paths are in angle
// brackets, so a strict server takes the email, pipelined or not.
func TestPathsInAngleBrackets(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		t.Run(map[bool]string{false: "one command at a time", true: "pipelined"}[pipelining], func(t *testing.T) {
			h, strict := startWithStrictServer(t, pipelining)
			h.publish(testJob(1))
			testkit.Eventually(t, 10*time.Second, func() error {
				if n, commands := strict.count(); n != 1 {
					return testkit.Errorf("%d emails taken; commands %q", n, commands)
				}
				return nil
			})
		})
	}
}

// TestPipeliningWhereOffered: a server offering PIPELINING gets MAIL, RCPT
// and DATA in one write (one round trip instead of three); one that does
// not gets them one at a time. A recipient refused in a pipelined
// transaction fails at once (5xx) and leaves the connection usable.
func TestPipeliningWhereOffered(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		t.Run(map[bool]string{false: "not offered", true: "offered"}[pipelining], func(t *testing.T) {
			h, strict := startWithStrictServer(t, pipelining)
			refused := testJob(2)
			refused.To = "refused@example.org"
			ids := h.publish(testJob(1), refused, testJob(3))

			h.waitStatus(ids[0], events.MailSent)
			h.waitStatus(ids[1], events.MailFailed)
			h.waitStatus(ids[2], events.MailSent)
			n, commands := strict.count()
			if n != 2 {
				t.Errorf("%d emails taken, want 2; commands %q", n, commands)
			}
			want := 0
			if pipelining {
				want = 3
			}
			if got := strict.pipelinedCount(); got != want {
				t.Errorf("%d MAIL commands came with their RCPT and DATA, want %d; commands %q", got, want, commands)
			}
			if a := h.statuses()[ids[1]]; len(a) != 1 {
				t.Errorf("the refused recipient's statuses %v, want one failed (no retry)", a)
			}
		})
	}
}

// TestRecipientWithALineBreakIsRefused: a recipient carrying CR or LF
// would end the RCPT command early and smuggle in a command of its own
// (the pipelined path writes it as it is); the job fails at once, and the
// connection goes on with the next. go-mail's compose refuses such an
// address too; pool.send checks before either.
func TestRecipientWithALineBreakIsRefused(t *testing.T) {
	h, strict := startWithStrictServer(t, true)
	bad := testJob(1)
	bad.To = "p1@example.org>\r\nRCPT TO:<smuggled@example.org"
	ids := h.publish(bad, testJob(2))

	h.waitStatus(ids[0], events.MailFailed)
	h.waitStatus(ids[1], events.MailSent)
	n, commands := strict.count()
	for _, c := range commands {
		if strings.Contains(c, "smuggled") {
			t.Errorf("the server got %q", c)
		}
	}
	if n != 1 {
		t.Errorf("%d emails taken, want 1; commands %q", n, commands)
	}
}
