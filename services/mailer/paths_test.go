package mailer

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/testkit"
)

// strictServer speaks just enough SMTP to take one message, and refuses,
// as Mailpit does, a MAIL FROM or RCPT TO whose path is not in angle
// brackets (RFC 5321 §4.1.2).
type strictServer struct {
	ln       net.Listener
	mu       sync.Mutex
	commands []string
	accepted int
}

func startStrictServer(t *testing.T) *strictServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &strictServer{ln: ln}
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
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.commands = append(s.commands, line)
		s.mu.Unlock()
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO" || verb == "HELO":
			reply("250 strict")
		case strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:"), strings.HasPrefix(strings.ToUpper(line), "RCPT TO:"):
			if path := line[strings.Index(line, ":")+1:]; !strings.HasPrefix(path, "<") || !strings.Contains(path, ">") {
				reply("501 5.5.4 Syntax error in parameters or arguments")
				continue
			}
			reply("250 OK")
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

// TestPathsInAngleBrackets: the mailer's envelope paths are in angle
// brackets, so a strict server takes the email.
func TestPathsInAngleBrackets(t *testing.T) {
	h := newHarness(t)
	strict := startStrictServer(t)
	h.cfg.SMTP.Addr = strict.ln.Addr().String()
	stop := h.start()
	defer stop()
	h.publish(testJob(1))
	testkit.Eventually(t, 10*time.Second, func() error {
		if n, commands := strict.count(); n != 1 {
			return testkit.Errorf("%d emails taken; commands %q", n, commands)
		}
		return nil
	})
}
