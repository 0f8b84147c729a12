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
	// LinkKey signs the one-click unsubscribe links of announcements; at
	// least 32 bytes, kept secret (the registration service's LINK_KEY).
	LinkKey string `env:"LINK_KEY"`
	// PublicURL is where participants reach Plenary: agenda page links in
	// emails, and the domain of calendar UIDs.
	PublicURL string `env:"PUBLIC_URL" envDefault:"http://localhost:8080"`
	// ReminderInterval is how often each replica looks for reminders and
	// agenda change notices that are due.
	ReminderInterval time.Duration `env:"REMINDER_INTERVAL" envDefault:"30s"`
	// AgendaNoticeDebounce is how long after the newest release an agenda
	// change notice waits, so that a burst of releases makes one notice.
	AgendaNoticeDebounce time.Duration `env:"AGENDA_NOTICE_DEBOUNCE" envDefault:"10m"`
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
	unsubLinks, err := newUnsubscribeLinks(cfg)
	if err != nil {
		return err
	}
	tmpl, err := newTemplates(cfg.MailFromName)
	if err != nil {
		return fmt.Errorf("notification: templates: %w", err)
	}
	log = log.With("service", "notification")
	public, err := publicSite(cfg.PublicURL)
	if err != nil {
		return fmt.Errorf("notification: %w", err)
	}

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
	evs := newEventReplica(deps.DB, log)
	if err := evs.ensureIndexes(ctx); err != nil {
		return fmt.Errorf("notification: %w", err)
	}
	n := newNotifier(deps, emails, people, evs, tmpl, log)
	sched := newScheduler(deps, n, evs, releases, cfg, public, log)
	app := deps.App()
	a, err := newAPI(ctx, deps.DB, emails, n, evs, unsubLinks, log)
	if err != nil {
		return fmt.Errorf("notification: %w", err)
	}
	routes(app, tokens, a)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return deps.Serve(ctx, app) })
	g.Go(func() error { return a.ann.resume(ctx, time.Minute) })
	g.Go(func() error {
		// One batch at a time keeps the registration events in stream
		// order: the replica and the erasures depend on it.
		return deps.Bus.ConsumeBatch(ctx, bus.ConsumerConfig{
			Stream:         events.StreamRegistration,
			Durable:        registrationsConsumer,
			FilterSubjects: []string{"registration.v1.>"}, // events too: reminders follow their times
			Workers:        1,
		}, batchSize, batchLinger, evs.wrap(n.handleRegistrations))
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
	g.Go(func() error { return sched.run(ctx) }) // reminders and agenda notices
	log.Info("notification started", "admin_tokens", len(tokens))
	return g.Wait()
}
