package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/embedded"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/services/agenda"
	"github.com/plenaryhq/plenary/services/mailer"
	"github.com/plenaryhq/plenary/services/notification"
	"github.com/plenaryhq/plenary/services/registration"
)

// Options configure the local stack. Empty infrastructure addresses mean
// "start an embedded one".
type Options struct {
	DataDir    string
	Addr       string
	PublicURL  string
	NATSURL    string
	MongoURI   string
	SMTPAddr   string
	AdminToken string
	LinkKey    string
	// DatabasePrefix names the services' databases: <prefix>_<service>.
	DatabasePrefix string
	Demo           bool
	// Unthrottled lifts the registration rate limits, for benchmarks.
	Unthrottled bool
	Log         *slog.Logger
	// Out receives the banner with URLs and the admin token.
	Out io.Writer
	// Started, if set, is called with the running stack once it serves.
	Started func(*Stack)
}

// Service names.
const (
	Registration = "registration"
	Agenda       = "agenda"
	Notification = "notification"
	Mailer       = "mailer"
)

var serviceNames = []string{Registration, Agenda, Notification, Mailer}

// Stack is the running local system.
type Stack struct {
	opts       Options
	log        *slog.Logger
	URL        string
	AdminToken string
	MailDir    string

	natsURL, mongoURI, smtpAddr string
	linkKey                     string

	mu       sync.Mutex
	services map[string]*running
}

// running is a started service. Its HTTP handler is mounted in the
// stack's one listener once the service has connected (see
// service.Common.Mount): requests are served in this process, with no
// second hop over loopback.
type running struct {
	cancel  context.CancelFunc
	done    chan error
	mounted chan struct{} // closed when the handler is first mounted

	// mu is held for reading while a request is served, so unmounting
	// (held for writing) waits for the requests in flight.
	mu      sync.RWMutex
	handler http.Handler
}

// mount is the service's service.Common.Mount.
func (r *running) mount(h http.Handler) (unmount func()) {
	r.mu.Lock()
	r.handler = h
	r.mu.Unlock()
	close(r.mounted)
	return func() {
		r.mu.Lock()
		r.handler = nil
		r.mu.Unlock()
	}
}

// serve serves a request with the mounted handler; false when there is
// none (the service is stopping or has stopped).
func (r *running) serve(w http.ResponseWriter, req *http.Request) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.handler == nil {
		return false
	}
	r.handler.ServeHTTP(w, req)
	return true
}

// Run starts the stack and serves until ctx ends.
func Run(ctx context.Context, opts Options) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.DatabasePrefix == "" {
		opts.DatabasePrefix = "plenary"
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	s := &Stack{opts: opts, log: opts.Log, services: map[string]*running{}}

	stopInfra, err := s.startInfra()
	if err != nil {
		return err
	}
	defer stopInfra()

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", opts.Addr, err)
	}
	s.URL = "http://" + displayAddr(ln.Addr())
	if opts.PublicURL == "" {
		opts.PublicURL = s.URL
		s.opts.PublicURL = s.URL
	}

	for _, name := range serviceNames {
		if err := s.Start(name); err != nil {
			s.stopAll()
			return err
		}
	}
	defer s.stopAll()

	// The services' own timeouts (pkg/web) apply here, where requests are
	// now read: a slow client cannot hold a request open for ever.
	srv := &http.Server{Handler: s.proxy(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	if err := s.waitReady(ctx); err != nil {
		_ = srv.Close()
		return err
	}
	if opts.Demo {
		if err := s.seedDemo(ctx); err != nil {
			s.log.Warn("demo event not seeded", "err", err)
		}
	}
	s.banner()
	if opts.Started != nil {
		opts.Started(s)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("public listener: %w", err)
	}
	s.log.Info("stopping: finishing requests and messages in flight")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)
	s.stopAll()
	s.log.Info("stopped")
	return err
}

// startInfra starts what Options did not point to and returns a function
// that stops it again.
func (s *Stack) startInfra() (func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	s.natsURL, s.mongoURI, s.smtpAddr = s.opts.NATSURL, s.opts.MongoURI, s.opts.SMTPAddr
	if s.natsURL == "" {
		ns, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: filepath.Join(s.opts.DataDir, "nats")})
		if err != nil {
			return nil, err
		}
		s.natsURL = ns.ClientURL()
		unregister := bus.RegisterInProcess(s.natsURL, ns) // the services reach it in memory
		stops = append(stops, func() { unregister(); ns.Shutdown(); ns.WaitForShutdown() })
	}
	if s.mongoURI == "" {
		quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
		f, err := embedded.StartFerretDB(filepath.Join(s.opts.DataDir, "ferretdb"), "127.0.0.1:0", quiet)
		if err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, f.Stop)
		s.mongoURI = f.URI
	}
	if s.smtpAddr == "" {
		box, err := startMailbox(filepath.Join(s.opts.DataDir, "mail"), s.opts.Out)
		if err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, func() { _ = box.Close() })
		s.smtpAddr, s.MailDir = box.Addr, box.dir
	}
	var err error
	if s.AdminToken, err = secret(s.opts.AdminToken, filepath.Join(s.opts.DataDir, "admin-token")); err != nil {
		stop()
		return nil, err
	}
	if s.linkKey, err = secret(s.opts.LinkKey, filepath.Join(s.opts.DataDir, "link-key")); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// common is the configuration every service shares in the local stack.
// The services see the stack's clients as their peers: no proxy to trust.
func (s *Stack) common(name string, r *running) service.Common {
	return service.Common{
		MongoURI:       s.mongoURI,
		MongoDatabase:  s.opts.DatabasePrefix + "_" + name,
		NATSURL:        s.natsURL,
		StreamReplicas: 1,
		ConnectWait:    15 * time.Second,
		Mount:          r.mount,
	}
}

// Start starts one service, to be mounted in the stack's listener.
func (s *Stack) Start(name string) error {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), mounted: make(chan struct{})}
	run, err := s.runner(name, r)
	if err != nil {
		cancel()
		return err
	}
	go func() {
		err := run(ctx, s.log)
		if err != nil && ctx.Err() == nil {
			s.log.Error("service stopped", "service", name, "err", err)
		}
		r.done <- err
	}()
	s.mu.Lock()
	s.services[name] = r
	s.mu.Unlock()
	return nil
}

// Stop stops one service and waits for it, as an outage or a deploy would.
func (s *Stack) Stop(name string) error {
	s.mu.Lock()
	r := s.services[name]
	delete(s.services, name)
	s.mu.Unlock()
	if r == nil {
		return fmt.Errorf("%s is not running", name)
	}
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not stop within 30s", name)
	}
}

// stopAll stops the services at once: each finishes its own work in flight.
func (s *Stack) stopAll() {
	var wg sync.WaitGroup
	for _, name := range serviceNames {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Stop(name)
		}()
	}
	wg.Wait()
}

func (s *Stack) runner(name string, r *running) (func(context.Context, *slog.Logger) error, error) {
	common := s.common(name, r)
	tokens := strings.Split(s.AdminToken, ",")
	switch name {
	case Registration:
		cfg, err := registration.LoadConfig()
		cfg.Common, cfg.PublicURL, cfg.AdminTokens, cfg.LinkKey = common, s.opts.PublicURL, tokens, s.linkKey
		if s.opts.Unthrottled {
			cfg.RatePerIP, cfg.RatePerEmail = 1<<30, 1<<30
		}
		return func(ctx context.Context, log *slog.Logger) error { return registration.Run(ctx, cfg, log) }, err
	case Agenda:
		cfg, err := agenda.LoadConfig()
		cfg.Common, cfg.PublicURL, cfg.AdminTokens = common, s.opts.PublicURL, tokens
		return func(ctx context.Context, log *slog.Logger) error { return agenda.Run(ctx, cfg, log) }, err
	case Notification:
		cfg, err := notification.LoadConfig()
		cfg.Common, cfg.AdminTokens = common, tokens
		cfg.PublicURL, cfg.LinkKey = s.opts.PublicURL, s.linkKey // unsubscribe links
		return func(ctx context.Context, log *slog.Logger) error { return notification.Run(ctx, cfg, log) }, err
	case Mailer:
		cfg, err := mailer.LoadConfig()
		cfg.Common = common
		cfg.SMTP.Addr = s.smtpAddr
		if s.opts.SMTPAddr == "" {
			cfg.SMTP.TLS = "none" // the local mailbox speaks plain SMTP on loopback
		}
		return func(ctx context.Context, log *slog.Logger) error { return mailer.Run(ctx, cfg, log) }, err
	}
	return nil, fmt.Errorf("unknown service %q", name)
}

// waitReady polls every service's /readyz.
func (s *Stack) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range serviceNames {
		for {
			err := s.ready(ctx, name)
			if err == nil {
				break
			}
			if errors.Is(err, errExited) || time.Now().After(deadline) {
				return fmt.Errorf("%s not ready: %w", name, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

var errExited = errors.New("exited")

func (s *Stack) ready(ctx context.Context, name string) error {
	s.mu.Lock()
	r := s.services[name]
	s.mu.Unlock()
	if r == nil {
		return errors.New("not running")
	}
	select {
	case err := <-r.done:
		r.done <- err
		return fmt.Errorf("%w: %v", errExited, err)
	default:
	}
	select {
	case <-r.mounted:
	default:
		return errors.New("starting")
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/readyz", nil)
	rec := httptest.NewRecorder()
	if !r.serve(rec, req) {
		return errors.New("stopping")
	}
	if rec.Code != http.StatusOK {
		return fmt.Errorf("readyz %d", rec.Code)
	}
	return nil
}

func (s *Stack) banner() {
	fmt.Fprintf(s.opts.Out, `
Plenary is running.

  public URL     %[1]s
  admin token    %[2]s
  health         %[1]s/readyz
  metrics        %[1]s/metrics/{registration,agenda,notification,mailer}
  mailbox        %[3]s

Try it:
  curl -X POST %[1]s/admin/events -H 'Authorization: Bearer %[2]s' -H 'Content-Type: application/json' \
    -d '{"slug":"my-event","title":"My event","timezone":"Europe/Vienna","starts_at":"2030-11-09T09:00:00+01:00","ends_at":"2030-11-10T17:00:00+01:00","capacity":{"in_person":50,"online":0}}'
  curl -X POST %[1]s/api/events/my-event/registrations -H 'Content-Type: application/json' \
    -d '{"name":"Ada","email":"ada@example.org","mode":"online","consent":true}'

`, s.URL, s.AdminToken, s.mailboxDesc())
}

func (s *Stack) mailboxDesc() string {
	if s.MailDir != "" {
		return s.MailDir + " (.eml files; one line per email below)"
	}
	return "SMTP " + s.smtpAddr
}

func displayAddr(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
