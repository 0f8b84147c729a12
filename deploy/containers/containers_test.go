//go:build containers

package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	tc "github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	adminToken = "containers-test-token"
	tag        = "dev"
)

// stack is Plenary in containers on a private network: NATS, FerretDB,
// Mailpit and the four services. Only the ports the test calls are
// published, and only on 127.0.0.1.
type stack struct {
	t            *testing.T
	net          *tc.DockerNetwork
	nats, mailer *tc.DockerContainer
	registration string // base URLs on the host
	notification string
	mailpit      string
}

func image(name string) string {
	if tagged := os.Getenv("PLENARY_IMAGE_TAG"); tagged != "" {
		return "plenary/" + name + ":" + tagged
	}
	return "plenary/" + name + ":" + tag
}

// loopbackOnly publishes ports on 127.0.0.1 alone, never on every interface.
func loopbackOnly(ports ...string) tc.CustomizeRequestOption {
	return tc.WithHostConfigModifier(func(hc *container.HostConfig) {
		if hc.PortBindings == nil {
			hc.PortBindings = network.PortMap{}
		}
		for _, p := range ports {
			hc.PortBindings[network.MustParsePort(p)] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
		}
	})
}

func (s *stack) run(name string, opts ...tc.ContainerCustomizer) *tc.DockerContainer {
	s.t.Helper()
	ctx := context.Background()
	opts = append([]tc.ContainerCustomizer{tcnetwork.WithNetwork([]string{name}, s.net)}, opts...)
	c, err := tc.Run(ctx, image(name), opts...)
	tc.CleanupContainer(s.t, c)
	if err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	// Registered after CleanupContainer, so it runs before: the logs of a
	// failed run are read while the container is still there.
	s.t.Cleanup(func() {
		if !s.t.Failed() {
			return
		}
		if rc, err := c.Logs(context.Background()); err == nil {
			raw, _ := io.ReadAll(io.LimitReader(rc, 64<<10))
			_ = rc.Close()
			s.t.Logf("%s logs:\n%s", name, raw)
		}
	})
	return c
}

// url returns http://127.0.0.1:<mapped port>, and fails the test if the
// container's host is anything but loopback.
func (s *stack) url(c *tc.DockerContainer, port string) string {
	s.t.Helper()
	ctx := context.Background()
	host, err := c.Host(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	if addr, err := netip.ParseAddr(host); (err != nil && host != "localhost") || (err == nil && !addr.IsLoopback()) {
		s.t.Fatalf("container host %q is not loopback: set TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1", host)
	}
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		s.t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", p.Num())
}

func startStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	nw, err := tcnetwork.New(ctx)
	tc.CleanupNetwork(t, nw)
	if err != nil {
		t.Fatalf("network: %v", err)
	}
	s := &stack{t: t, net: nw}

	s.nats = s.run("nats", tc.WithCmd("-c", "/etc/plenary/nats.conf"),
		tc.WithWaitStrategy(wait.ForLog("Server is ready").WithStartupTimeout(30*time.Second)))
	s.run("ferretdb", tc.WithCmd("-listen", ":27017", "-data", "/data"),
		tc.WithWaitStrategy(wait.ForLog("ferretdb: listening").WithStartupTimeout(30*time.Second)))
	mailpit := s.run("mailpit", tc.WithCmd("--smtp", ":1025", "--listen", ":8025", "--database", "/data/mailpit.db"),
		tc.WithExposedPorts("8025/tcp"), loopbackOnly("8025/tcp"),
		tc.WithWaitStrategy(wait.ForHTTP("/api/v1/messages").WithPort("8025/tcp").WithStartupTimeout(30*time.Second)))
	s.mailpit = s.url(mailpit, "8025/tcp")

	common := map[string]string{
		"MONGODB_URI":  "mongodb://ferretdb:27017/",
		"NATS_URL":     "nats://nats:4222",
		"ADMIN_TOKENS": adminToken,
		"CONNECT_WAIT": "30s",
	}
	service := func(name, port string, extra map[string]string) *tc.DockerContainer {
		env := map[string]string{"HTTP_ADDR": ":" + port}
		for k, v := range common {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return s.run(name, tc.WithEnv(env), tc.WithExposedPorts(port+"/tcp"), loopbackOnly(port+"/tcp"),
			tc.WithWaitStrategy(wait.ForHTTP("/readyz").WithPort(port+"/tcp").WithStartupTimeout(60*time.Second)))
	}
	reg := service("registration", "8081", map[string]string{
		"PUBLIC_URL": "http://plenary.test", "LINK_KEY": strings.Repeat("k", 32),
	})
	service("agenda", "8082", map[string]string{"PUBLIC_URL": "http://plenary.test"})
	notif := service("notification", "8083", map[string]string{
		"PUBLIC_URL": "http://plenary.test", "LINK_KEY": strings.Repeat("k", 32),
	})
	s.mailer = service("mailer", "8084", map[string]string{"SMTP_ADDR": "mailpit:1025", "SMTP_TLS": "none"})
	s.registration, s.notification = s.url(reg, "8081/tcp"), s.url(notif, "8083/tcp")
	return s
}

func (s *stack) call(method, url string, body any, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// inbox counts the emails Mailpit holds, per recipient address.
func (s *stack) inbox() map[string]int {
	s.t.Helper()
	var list struct {
		Messages []struct {
			To []struct{ Address string }
		}
	}
	s.call(http.MethodGet, s.mailpit+"/api/v1/messages?limit=500", nil, &list)
	out := map[string]int{}
	for _, m := range list.Messages {
		for _, to := range m.To {
			out[to.Address]++
		}
	}
	return out
}

// waitInbox polls until every address has exactly one email and nothing
// else arrived.
func (s *stack) waitInbox(addrs ...string) {
	s.t.Helper()
	err := eventually(60*time.Second, func() error {
		got := s.inbox()
		ok := len(got) == len(addrs)
		for _, a := range addrs {
			if got[a] > 1 {
				s.t.Fatalf("%s got %d emails: %v", a, got[a], got)
			}
			ok = ok && got[a] == 1
		}
		if !ok {
			return fmt.Errorf("inbox %v, want one email each for %v", got, addrs)
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
}

// waitLog waits until the email log of the event lists n emails, all sent.
func (s *stack) waitLog(eventID string, n int) {
	s.t.Helper()
	err := eventually(30*time.Second, func() error {
		var log struct{ Items []struct{ To, Status string } }
		s.call(http.MethodGet, s.notification+"/admin/events/"+eventID+"/emails", nil, &log)
		sent := 0
		for _, it := range log.Items {
			if it.Status == "sent" {
				sent++
			}
		}
		if len(log.Items) != n || sent != n {
			return fmt.Errorf("email log %+v, want %d emails, all sent", log.Items, n)
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) register(slug, email string) {
	s.t.Helper()
	status := s.call(http.MethodPost, s.registration+"/api/events/"+slug+"/registrations", map[string]any{
		"name": "Participant", "email": email, "mode": "online", "consent": true,
	}, nil)
	if status != http.StatusAccepted {
		s.t.Fatalf("register %s: %d", email, status)
	}
}

func TestPlenaryInContainers(t *testing.T) {
	s := startStack(t)
	var ev struct{ ID string }
	status := s.call(http.MethodPost, s.registration+"/admin/events", map[string]any{
		"slug": "containers", "title": "Roundtable in containers", "timezone": "Europe/Vienna",
		"starts_at": time.Now().Add(48 * time.Hour).Format(time.RFC3339),
		"ends_at":   time.Now().Add(72 * time.Hour).Format(time.RFC3339),
	}, &ev)
	if status != http.StatusCreated {
		t.Fatalf("create event: %d", status)
	}

	t.Run("one registration, one email, logged as sent", func(t *testing.T) {
		s.register("containers", "first@example.org")
		s.waitInbox("first@example.org")
		s.waitLog(ev.ID, 1)
	})

	t.Run("mailer stopped while jobs queue up", func(t *testing.T) {
		timeout := 10 * time.Second
		if err := s.mailer.Stop(context.Background(), &timeout); err != nil {
			t.Fatal(err)
		}
		s.register("containers", "queued-1@example.org")
		s.register("containers", "queued-2@example.org")
		if err := s.mailer.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		s.waitInbox("first@example.org", "queued-1@example.org", "queued-2@example.org")
	})

	t.Run("NATS restarted", func(t *testing.T) {
		timeout := 10 * time.Second
		if err := s.nats.Stop(context.Background(), &timeout); err != nil {
			t.Fatal(err)
		}
		// A registration is accepted only once NATS stored it: while NATS
		// is away the answer is 503, and a retry once it is back goes in.
		body := map[string]any{"name": "Participant", "email": "outage@example.org", "mode": "online", "consent": true}
		if st := s.call(http.MethodPost, s.registration+"/api/events/containers/registrations", body, nil); st != http.StatusServiceUnavailable {
			t.Fatalf("register during the NATS outage: %d, want 503", st)
		}
		if err := s.nats.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			st := s.call(http.MethodPost, s.registration+"/api/events/containers/registrations", body, nil)
			if st == http.StatusAccepted {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("register after the NATS outage: %d", st)
			}
		}
		s.waitInbox("first@example.org", "queued-1@example.org", "queued-2@example.org", "outage@example.org")
		// Every status reported: nothing is in flight that could still
		// arrive as a late duplicate.
		s.waitLog(ev.ID, 4)
		s.waitInbox("first@example.org", "queued-1@example.org", "queued-2@example.org", "outage@example.org")
	})
}
