package testkit

import (
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Proxy is a loopback TCP proxy in front of one server (MongoDB, NATS), so
// a test can make that server unreachable for one client while others
// still reach it: point the client at the proxy, then Cut and Restore.
type Proxy struct {
	t      testing.TB
	target string
	ln     net.Listener

	mu     sync.Mutex
	cut    bool
	closed bool
	conns  map[net.Conn]struct{} // both ends of every open connection
	wg     sync.WaitGroup
}

// StartProxy starts a proxy to target ("host:port", or a URL such as
// mongodb://127.0.0.1:27017/ or nats://127.0.0.1:4222) on a free loopback
// port, closed when t ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	if strings.Contains(target, "://") {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatalf("testkit: proxy target %q: %v", target, err)
		}
		target = u.Host
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testkit: proxy: %v", err)
	}
	p := &Proxy{t: t, target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns u with its host and port replaced by the proxy's, so
// p.URL(testkit.MongoURI(t)) or p.URL(nats.URL) reaches the server through
// the proxy. Whatever else u holds (scheme, path, query) is kept.
func (p *Proxy) URL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" {
		p.t.Fatalf("testkit: proxy: %q is not a URL with a host", u)
	}
	parsed.Host = p.Addr()
	return parsed.String()
}

// Cut closes every open connection, as a crashed server or a broken
// network would, and refuses new ones (they are closed at once) until
// Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		abort(c)
	}
	clear(p.conns)
}

// Restore lets new connections through again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Close stops the proxy and closes every connection; it is called when the
// test ends.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	_ = p.ln.Close()
	for c := range p.conns {
		abort(c)
	}
	clear(p.conns)
	p.mu.Unlock()
	p.wg.Wait()
}

// abort closes c with a reset rather than an orderly shutdown: the peer
// sees the connection die, not end.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.mu.Lock()
		refuse := p.cut || p.closed
		p.mu.Unlock()
		if refuse {
			abort(client)
			continue
		}
		p.wg.Add(1)
		go p.pipe(client)
	}
}

// pipe connects client to the target and copies both ways until either
// side closes or the proxy cuts them.
func (p *Proxy) pipe(client net.Conn) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		abort(client)
		return
	}
	p.mu.Lock()
	if p.cut || p.closed { // cut while dialling
		p.mu.Unlock()
		abort(client)
		abort(server)
		return
	}
	p.conns[client] = struct{}{}
	p.conns[server] = struct{}{}
	p.mu.Unlock()

	done := make(chan struct{}, 2)
	copyHalf := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// One side ended: end the other too, so neither waits for ever.
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go copyHalf(server, client)
	go copyHalf(client, server)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}
