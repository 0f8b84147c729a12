// Package agenda owns sessions and agenda releases. It learns the events it
// schedules from the registration service's events (event-carried state
// transfer) and keeps its own replica of them.
package agenda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	_ "time/tzdata" // zones in scratch images

	"github.com/caarlos0/env/v11"
	"golang.org/x/sync/errgroup"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/web"
)

// Config is the agenda service's configuration.
type Config struct {
	service.Common
	// AdminTokens are the organizers' bearer tokens, comma-separated.
	AdminTokens []string `env:"ADMIN_TOKENS"`
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
	deps, err := service.Start(ctx, "agenda", cfg.Common, log,
		events.StreamRegistration, events.StreamAgenda, events.StreamDLQ)
	if err != nil {
		return err
	}
	defer deps.Close()

	a := &agenda{cfg: cfg, log: log, events: newReplica(deps.DB)}
	app := deps.App()
	a.routes(app)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return deps.Serve(ctx, app) })
	g.Go(func() error {
		// One worker keeps an event's versions in order.
		return deps.Bus.Consume(ctx, bus.ConsumerConfig{
			Stream:         events.StreamRegistration,
			Durable:        "agenda-events",
			FilterSubjects: []string{events.AllEvents},
		}, a.handleEvent)
	})
	log.Info("agenda started")
	return g.Wait()
}

type agenda struct {
	cfg    Config
	log    *slog.Logger
	events *replica
}
