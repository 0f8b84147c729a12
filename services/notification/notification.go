// Package notification decides and renders Plenary's emails. It consumes
// registration events, renders each email once (text, HTML, calendar invite),
// records it in its email log and hands it to the mailer as a job on the MAIL
// work queue; it follows the mailer's status reports so organizers can see
// what was sent to whom. It keeps its own replica of the agenda's releases,
// for agenda change notices.
package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/caarlos0/env/v11"
	"golang.org/x/sync/errgroup"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/web"
)

// Config is the notification service's configuration, read from the
// environment.
type Config struct {
	service.Common
	// AdminTokens are the organizers' bearer tokens for /admin routes.
	AdminTokens []string `env:"ADMIN_TOKENS"`
	// MailFromName signs the emails ("The Plenary team"); when empty they are
	// signed by the organisers of the event.
	MailFromName string `env:"MAIL_FROM_NAME"`
}

// LoadConfig reads the configuration from the environment.
func LoadConfig() (Config, error) {
	cfg, err := env.ParseAs[Config]()
	if err != nil {
		return cfg, fmt.Errorf("notification: config: %w", err)
	}
	cfg.Defaults(":8083", "plenary_notification")
	return cfg, nil
}

// Consumers fetch up to batchSize messages, waiting up to batchLinger for
// a batch to fill once the first has come: one database write and one
// atomic publish per batch instead of one per message (DESIGN §9).
const (
	batchSize   = 500
	batchLinger = 20 * time.Millisecond
)

// Consumer names: durable, shared by every replica.
const (
	registrationsConsumer = "notification"
	statusConsumer        = "notification-status"
	releasesConsumer      = "notification-agenda"
)

// Run runs the notification service until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	tokens := web.Tokens(cfg.AdminTokens)
	if len(tokens) == 0 {
		return errors.New("notification: ADMIN_TOKENS is empty: set at least one organizer token (comma-separated)")
	}
	tmpl, err := newTemplates(cfg.MailFromName)
	if err != nil {
		return fmt.Errorf("notification: templates: %w", err)
	}
	log = log.With("service", "notification")

	deps, err := service.Start(ctx, "notification", cfg.Common, log,
		events.StreamRegistration, events.StreamAgenda, events.StreamMail, events.StreamMailStatus, events.StreamDLQ)
	if err != nil {
		return err
	}
	defer deps.Close()

	emails := newEmailStore(deps.DB)
	if err := emails.ensureIndexes(ctx); err != nil {
		return fmt.Errorf("notification: %w", err)
	}
	releases := newReleaseReplica(deps.DB, log)
	if err := releases.ensureIndexes(ctx); err != nil {
		return fmt.Errorf("notification: %w", err)
	}
	people := newParticipants(deps.DB, emails)
	if err := people.ensureIndexes(ctx); err != nil {
		return fmt.Errorf("notification: %w", err)
	}
	n := newNotifier(deps, emails, people, tmpl, log)
	app := deps.App()
	routes(app, tokens, &api{emails: emails})

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return deps.Serve(ctx, app) })
	g.Go(func() error {
		// One batch at a time keeps the registration events in stream
		// order: the replica and the erasures depend on it.
		return deps.Bus.ConsumeBatch(ctx, bus.ConsumerConfig{
			Stream:         events.StreamRegistration,
			Durable:        registrationsConsumer,
			FilterSubjects: []string{"registration.v1.>"}, // events too: reminders follow their times
			Workers:        1,
		}, batchSize, batchLinger, n.handleRegistrations)
	})
	g.Go(func() error {
		return deps.Bus.ConsumeBatch(ctx, bus.ConsumerConfig{
			Stream:         events.StreamMailStatus,
			Durable:        statusConsumer,
			FilterSubjects: []string{events.AllMailStatus},
			Workers:        2,
		}, batchSize, batchLinger, n.handleStatuses)
	})
	g.Go(func() error {
		// One worker: releases are rare, and handled one at a time they
		// are stored in the order the agenda published them.
		return deps.Bus.Consume(ctx, bus.ConsumerConfig{
			Stream:         events.StreamAgenda,
			Durable:        releasesConsumer,
			FilterSubjects: []string{events.AgendaReleasePublished},
		}, releases.handleRelease)
	})
	log.Info("notification started", "admin_tokens", len(tokens))
	return g.Wait()
}
