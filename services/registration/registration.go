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

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
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
	// DeciderPinnedTTL is how long the active decider may stop pulling
	// before another replica's decider takes over.
	DeciderPinnedTTL time.Duration `env:"DECIDER_PINNED_TTL" envDefault:"5s"`
	// ActionWait bounds how long an organiser's or a participant's change
	// waits for the decider's outcome before it is answered 202.
	ActionWait time.Duration `env:"ACTION_WAIT" envDefault:"5s"`
	// RetentionInterval is how often events past their retention period
	// are looked for, to anonymise their registrations.
	RetentionInterval time.Duration `env:"RETENTION_INTERVAL" envDefault:"1h"`
	// ResendPerHour bounds "email me my links again" per registration.
	ResendPerHour int `env:"RESEND_LIMIT_PER_HOUR" envDefault:"3"`
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
	// AGENDA is the agenda service's, but a consumer needs it to exist
	// whichever service starts first.
	deps, err := service.Start(ctx, "registration", cfg.Common, log,
		events.StreamRegistration, events.StreamRequests, events.StreamAgenda)
	if err != nil {
		return err
	}
	defer deps.Close()

	st := newStore(deps.DB)
	if err := st.ensureIndexes(ctx); err != nil {
		return err
	}
	catalog, err := i18n.New()
	if err != nil {
		return err
	}
	outbox := store.NewOutbox(deps.DB, deps.Bus, log)
	groupSizes := newGroupSizes(deps.Metrics)
	// Two committers: a group fills while the one before is being stored,
	// and a request arriving then need not wait for that one's ack before
	// its own goes out. (Measured in make bench, core alone, two runs each:
	// one gave 2,414 and 2,743 accepted/s, open-loop p99 33 and 44 ms; two
	// gave 2,329 and 2,212/s, open-loop p99 25 and 24 ms.)
	committer := bus.NewCommitter(deps.Bus, events.RequestGroupSubject, 2, func(n int) { groupSizes.Observe(float64(n)) })
	defer committer.Close()
	svc := &registrar{
		cfg:       cfg,
		log:       log,
		store:     st,
		outbox:    outbox,
		bus:       deps.Bus,
		committer: committer,
		links:     signer,
		public:    strings.TrimRight(cfg.PublicURL, "/"),
		cache:     newEventCache(st),
		resends:   newResendLimiter(cfg.ResendPerHour),
		i18n:      catalog,
		agendas:   newAgendaReplica(deps.DB, log),
	}
	svc.registerAppliers()
	dec, err := svc.newDecider(ctx, newDeciderMetrics(deps.Metrics))
	if err != nil {
		return err
	}

	app := deps.App()
	svc.routes(app)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return deps.Serve(ctx, app) })
	g.Go(func() error { return outbox.Relay(ctx, cfg.OutboxInterval, 2*cfg.OutboxInterval) })
	g.Go(func() error { return dec.run(ctx) })
	g.Go(func() error { return svc.retainEvery(ctx, cfg.RetentionInterval) })
	g.Go(func() error { return svc.agendas.consume(ctx, deps.Bus) })
	log.Info("registration started", "public_url", svc.public)
	return g.Wait()
}
