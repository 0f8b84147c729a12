package testkit

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line on c and returns what comes back, or an error.
func roundTrip(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func TestProxyCutAndRestore(t *testing.T) {
	p := StartProxy(t, "tcp://"+echoServer(t))
	if got := p.URL("mongodb://127.0.0.1:27017/db?x=1"); got != "mongodb://"+p.Addr()+"/db?x=1" {
		t.Fatalf("URL: %s", got)
	}

	before, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if got, err := roundTrip(before, "hello"); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q %v", got, err)
	}

	p.Cut()
	if _, err := roundTrip(before, "still there?"); err == nil {
		t.Fatal("a connection open before Cut still works after it")
	}
	// New connections are refused: accepted at most, then closed before
	// anything reaches the server.
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		_, err := roundTrip(c, "anyone?")
		c.Close()
		if err == nil {
			t.Fatal("a new connection works while cut")
		}
	}

	p.Restore()
	after, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if got, err := roundTrip(after, "back"); err != nil || got != "back" {
		t.Fatalf("after Restore: %q %v", got, err)
	}
}

// The proxy works for a real client: the embedded NATS server.
func TestProxyInFrontOfNATS(t *testing.T) {
	n := StartNATS(t)
	p := StartProxy(t, n.URL)
	b := (&NATS{URL: p.URL(n.URL)}).Bus(t)
	if !b.NC.IsConnected() {
		t.Fatal("not connected through the proxy")
	}
	p.Cut()
	Eventually(t, 5*time.Second, func() error {
		if b.NC.IsConnected() {
			return Errorf("still connected after Cut")
		}
		return nil
	})
	p.Restore()
	Eventually(t, 10*time.Second, func() error {
		if !b.NC.IsConnected() {
			return Errorf("not reconnected after Restore")
		}
		return nil
	})
}
