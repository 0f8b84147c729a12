// Package agenda owns sessions and agenda releases. Organisers edit a draft;
// publishing snapshots it as an immutable, numbered release announced as
// agenda.v1.release.published with its difference from the release before.
// The service learns the events it schedules from the registration
// service's events (event-carried state transfer) and keeps a replica.
package agenda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
	_ "time/tzdata" // zones in scratch images

	"github.com/caarlos0/env/v11"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/sync/errgroup"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// Config is the agenda service's configuration.
type Config struct {
	service.Common
	// PublicURL is where people reach Plenary: the agenda page's address
	// in calendar feeds, and the domain of their UIDs.
	PublicURL string `env:"PUBLIC_URL" envDefault:"http://localhost:8080"`
	// AdminTokens are the organizers' bearer tokens, comma-separated, each
	// optionally named: "secretariat:<token>". Releases record the name.
	AdminTokens []string `env:"ADMIN_TOKENS"`
	// OutboxInterval is how often the relay sweeps the outbox.
	OutboxInterval time.Duration `env:"OUTBOX_INTERVAL" envDefault:"2s"`
}

// LoadConfig reads the configuration from the environment.
func LoadConfig() (Config, error) {
	cfg, err := env.ParseAs[Config]()
	if err != nil {
		return cfg, fmt.Errorf("agenda: config: %w", err)
	}
	cfg.Defaults(":8082", "plenary_agenda")
	return cfg, nil
}

// Run serves the agenda service until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	log = log.With("service", "agenda")
	cfg.AdminTokens = web.Tokens(cfg.AdminTokens)
	if len(cfg.AdminTokens) == 0 {
		return errors.New("agenda: ADMIN_TOKENS is empty: set at least one organizer token")
	}
	public, err := url.Parse(strings.TrimRight(cfg.PublicURL, "/"))
	if err != nil || (public.Scheme != "http" && public.Scheme != "https") || public.Host == "" {
		return fmt.Errorf("agenda: PUBLIC_URL %q must be an http(s) URL", cfg.PublicURL)
	}
	if cfg.OutboxInterval <= 0 {
		cfg.OutboxInterval = 2 * time.Second
	}
	catalog, err := i18n.New()
	if err != nil {
		return fmt.Errorf("agenda: %w", err)
	}
	deps, err := service.Start(ctx, "agenda", cfg.Common, log,
		events.StreamRegistration, events.StreamAgenda, events.StreamDLQ)
	if err != nil {
		return err
	}
	defer deps.Close()
	if err := store.EnsureIndexes(ctx, deps.DB,
		store.Index{Collection: "drafts", Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "n", Value: -1}}},
		store.Index{Collection: "releases", Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "n", Value: -1}}},
	); err != nil {
		return fmt.Errorf("agenda: %w", err)
	}

	a := &agenda{
		cfg: cfg, log: log, public: public, catalog: catalog,
		events:   newReplica(deps.DB),
		drafts:   drafts{newHistory(deps.DB, "drafts", "draft")},
		releases: newReleases(deps.DB),
		outbox:   store.NewOutbox(deps.DB, deps.Bus, log),
	}
	a.races = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agenda_version_races_total",
		Help: "Edits and publishes that lost the race for the next draft revision or release version and started over.",
	})
	deps.Metrics.MustRegister(a.races)
	a.outbox.Register(kindRelease, a.applyRelease)
	app := deps.App()
	a.routes(app)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return deps.Serve(ctx, app) })
	g.Go(func() error { return a.outbox.Relay(ctx, cfg.OutboxInterval, 2*cfg.OutboxInterval) })
	g.Go(func() error {
		// One event in flight across all replicas, in stream order:
		// FerretDB runs the replica's conditional replace as read, match,
		// write, so two versions applied at once could leave the older.
		return deps.Bus.Consume(ctx, bus.ConsumerConfig{
			Stream:         events.StreamRegistration,
			Durable:        "agenda-events",
			FilterSubjects: []string{events.AllEvents},
			Workers:        1,
			MaxAckPending:  1,
		}, a.handleEvent)
	})
	log.Info("agenda started")
	return g.Wait()
}

type agenda struct {
	cfg      Config
	log      *slog.Logger
	public   *url.URL
	catalog  *i18n.Catalog
	events   *replica
	drafts   drafts
	releases *releases
	outbox   *store.Outbox
	races    prometheus.Counter
}
