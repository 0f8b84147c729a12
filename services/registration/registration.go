// Package registration owns events and registrations: organizers create
// events, participants register (in person or online), and every change is
// written through the outbox and announced on the REGISTRATION stream.
package registration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	_ "time/tzdata" // zones in scratch images

	"github.com/caarlos0/env/v11"
	"golang.org/x/sync/errgroup"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// Config is the registration service's configuration.
type Config struct {
	service.Common
	// PublicURL is where participants reach Plenary; links in emails start
	// with it.
	PublicURL string `env:"PUBLIC_URL" envDefault:"http://localhost:8080"`
	// AdminTokens are the organizers' bearer tokens, comma-separated.
	AdminTokens []string `env:"ADMIN_TOKENS"`
	// LinkKey signs participants' links; at least 32 bytes, kept secret.
	LinkKey string `env:"LINK_KEY"`
	// RatePerIP and RatePerEmail bound registration attempts per minute.
	RatePerIP    int `env:"RATE_LIMIT_PER_IP" envDefault:"60"`
	RatePerEmail int `env:"RATE_LIMIT_PER_EMAIL" envDefault:"5"`
	// OutboxInterval is how often the relay sweeps the outbox.
	OutboxInterval time.Duration `env:"OUTBOX_INTERVAL" envDefault:"3s"`
	// SeatReconcileInterval is how often seats left claimed by crashed
	// registrations are looked for.
	SeatReconcileInterval time.Duration `env:"SEAT_RECONCILE_INTERVAL" envDefault:"10m"`
}

// LoadConfig reads the configuration from the environment.
func LoadConfig() (Config, error) {
	cfg, err := env.ParseAs[Config]()
	if err != nil {
		return cfg, fmt.Errorf("registration: config: %w", err)
	}
	cfg.Defaults(":8081", "plenary_registration")
	return cfg, nil
}

func (c *Config) validate() error {
	c.AdminTokens = web.Tokens(c.AdminTokens)
	if len(c.AdminTokens) == 0 {
		return errors.New("registration: ADMIN_TOKENS is empty: set at least one organizer token")
	}
	if len(c.LinkKey) < links.MinKeyLen {
		return errors.New("registration: LINK_KEY must be set to a secret of at least 32 bytes")
	}
	if !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		return fmt.Errorf("registration: PUBLIC_URL %q must start with http:// or https://", c.PublicURL)
	}
	return nil
}

// Run serves the registration service until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	log = log.With("service", "registration")
	if err := cfg.validate(); err != nil {
		return err
	}
	signer, err := links.NewSigner([]byte(cfg.LinkKey))
	if err != nil {
		return err
	}
	deps, err := service.Start(ctx, "registration", cfg.Common, log, events.StreamRegistration)
	if err != nil {
		return err
	}
	defer deps.Close()

	st := newStore(deps.DB)
	if err := st.ensureIndexes(ctx); err != nil {
		return err
	}
	outbox := store.NewOutbox(deps.DB, deps.Bus, log)
	svc := &registrar{
		cfg:    cfg,
		log:    log,
		store:  st,
		outbox: outbox,
		links:  signer,
		public: strings.TrimRight(cfg.PublicURL, "/"),
	}
	svc.registerAppliers()

	app := deps.App()
	svc.routes(app)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return deps.Serve(ctx, app) })
	g.Go(func() error { return outbox.Relay(ctx, cfg.OutboxInterval, 2*cfg.OutboxInterval) })
	g.Go(func() error { return svc.reconcileEvery(ctx, cfg.SeatReconcileInterval) })
	log.Info("registration started", "public_url", svc.public)
	return g.Wait()
}
