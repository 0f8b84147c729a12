package registration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// The helpers of the failure tests: replicas of the service that a test
// can kill, a record of what their deciders log, and an HTTP sender that
// reports errors instead of failing the test.

// replicaConfig is the configuration harness.start runs with, for a replica
// that reaches NATS and MongoDB at the given addresses (directly or through
// a testkit.Proxy).
func replicaConfig(natsURL, mongoURI, database string) Config {
	return Config{
		Common: service.Common{
			MongoURI:      mongoURI,
			MongoDatabase: database,
			NATSURL:       natsURL,
			ConnectWait:   5 * time.Second,
		},
		PublicURL:         "http://plenary.test",
		AdminTokens:       []string{adminToken},
		LinkKey:           strings.Repeat("k", 32),
		RatePerIP:         1_000_000, // one client IP sends everything here
		RatePerEmail:      1000,
		OutboxInterval:    200 * time.Millisecond,
		RetentionInterval: time.Hour,
		ActionWait:        5 * time.Second,
		DeciderPinnedTTL:  2 * time.Second,
	}
}

// replica is one running registration service.
type replica struct {
	name   string
	base   string
	admin  testkit.Client
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// startReplica runs a service with cfg and waits until it is ready. Its
// logs go through watch, tagged with name.
func startReplica(t *testing.T, name string, cfg Config, watch *logWatch) *replica {
	t.Helper()
	ln, base := testkit.Listen(t)
	cfg.Listener = ln
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{name: name, base: base, admin: testkit.Client{Base: base, Token: adminToken},
		cancel: cancel, done: make(chan error, 1)}
	log := slog.New(watch.handler(name, testkit.Logger(t).Handler()))
	go func() { r.done <- Run(ctx, cfg, log) }()
	t.Cleanup(func() { r.stop(t) })
	testkit.Eventually(t, 15*time.Second, func() error {
		if st, _, err := sendHTTP(http.MethodGet, base+"/readyz", nil); err != nil || st != http.StatusOK {
			return fmt.Errorf("%s not ready: %d %v", name, st, err)
		}
		return nil
	})
	return r
}

// stop cancels the replica and waits for Run to return; it returns how long
// stopping took and Run's error (nil for a clean stop).
func (r *replica) stop(t *testing.T) (time.Duration, error) {
	start := time.Now()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(30 * time.Second):
			r.err = fmt.Errorf("%s did not stop within 30s", r.name)
			t.Error(r.err)
		}
	})
	return time.Since(start), r.err
}

// logWatch records what the deciders log about themselves (messages that
// start with "decider:"), per replica, with the time.
type logWatch struct {
	mu   sync.Mutex
	seen []logged
}

type logged struct {
	replica string
	msg     string
	at      time.Time
}

func (w *logWatch) handler(replica string, next slog.Handler) slog.Handler {
	return watchHandler{Handler: next, w: w, replica: replica}
}

// find returns the records of replica (any when "") whose message starts
// with prefix, in order.
func (w *logWatch) find(replica, prefix string) []logged {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []logged
	for _, l := range w.seen {
		if (replica == "" || l.replica == replica) && strings.HasPrefix(l.msg, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// takeovers returns the records of replica's decider starting to decide:
// its state rebuilt (at its first pin, and whenever it is pinned after
// another decider decided) or its pin renewed with the state kept.
func (w *logWatch) takeovers(replica string) []logged {
	out := w.find(replica, "decider: state reloaded")
	out = append(out, w.find(replica, "decider: pinned")...)
	slices.SortFunc(out, func(a, b logged) int { return a.at.Compare(b.at) })
	return out
}

type watchHandler struct {
	slog.Handler
	w       *logWatch
	replica string
}

func (h watchHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "decider:") {
		h.w.mu.Lock()
		h.w.seen = append(h.w.seen, logged{replica: h.replica, msg: r.Message, at: r.Time})
		h.w.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h watchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return watchHandler{Handler: h.Handler.WithAttrs(as), w: h.w, replica: h.replica}
}

func (h watchHandler) WithGroup(name string) slog.Handler {
	return watchHandler{Handler: h.Handler.WithGroup(name), w: h.w, replica: h.replica}
}

// waitDeciderIdle waits until the decider consumer has acknowledged
// everything: nothing pending, nothing awaiting an ack or a redelivery. A
// request delivered to a decider that died is redelivered only after the
// consumer's AckWait (a minute), hence the long default.
func waitDeciderIdle(t *testing.T, js jetstream.JetStream, timeout time.Duration) {
	t.Helper()
	testkit.Eventually(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, events.StreamRequests, deciderDurable)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("decider: %d pending, %d awaiting ack, %d redelivered",
				info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		return nil
	})
}

var failoverClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// sendHTTP makes one request and returns the status and body, or the error a
// client sees when the server is gone (refused, reset, timed out).
func sendHTTP(method, url string, body any, headers ...string) (int, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := failoverClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// registrationBody is a valid registration for email.
func registrationBody(email, mode string, waitlistOK bool) map[string]any {
	return map[string]any{"name": "Participant " + strings.Split(email, "@")[0], "email": email,
		"mode": mode, "consent": true, "waitlist_ok": waitlistOK}
}
