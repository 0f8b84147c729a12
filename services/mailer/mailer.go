// Package mailer is Plenary's SMTP worker. It consumes the MAIL work queue,
// sends each job over pooled, reused go-mail connections, records what it
// sent so a redelivered job is not sent again, and publishes each job's
// status (sent, deferred, failed) on MAIL_STATUS.
package mailer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/caarlos0/env/v11"
	"golang.org/x/sync/errgroup"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
)

// Config is the mailer's configuration, read from the environment.
type Config struct {
	service.Common
	SMTP SMTPConfig
	// Workers is how many emails are sent at once; each has its own SMTP
	// connection.
	Workers int `env:"MAILER_WORKERS" envDefault:"4"`
	// MaxDeliver bounds attempts per email before it is marked failed. With
	// the default backoff, 20 attempts span about seven hours: greylisting
	// and a relay's outage of a few hours cost no email.
	MaxDeliver int `env:"MAILER_MAX_DELIVER" envDefault:"20"`
	// RetryBase is the wait after the first temporary failure; it doubles
	// with each attempt up to RetryMax.
	RetryBase time.Duration `env:"MAILER_RETRY_BASE" envDefault:"30s"`
	RetryMax  time.Duration `env:"MAILER_RETRY_MAX" envDefault:"30m"`
}

// backoff waits RetryBase, twice that, … at most RetryMax.
func (c Config) backoff(attempt int) time.Duration {
	d := c.RetryBase
	for i := 1; i < attempt && d < c.RetryMax; i++ {
		d *= 2
	}
	return min(d, c.RetryMax)
}

// SMTPConfig says where and how to send.
type SMTPConfig struct {
	Addr     string `env:"SMTP_ADDR" envDefault:"127.0.0.1:1025"`
	Username string `env:"SMTP_USERNAME"`
	Password string `env:"SMTP_PASSWORD"`
	// TLS is none, opportunistic (STARTTLS if offered), starttls (required)
	// or implicit (TLS from the first byte, port 465).
	TLS     string        `env:"SMTP_TLS" envDefault:"opportunistic"`
	From    string        `env:"SMTP_FROM" envDefault:"Plenary <no-reply@plenary.localhost>"`
	Timeout time.Duration `env:"SMTP_TIMEOUT" envDefault:"30s"`
}

// LoadConfig reads the configuration from the environment.
func LoadConfig() (Config, error) {
	cfg, err := env.ParseAs[Config]()
	if err != nil {
		return cfg, fmt.Errorf("mailer: config: %w", err)
	}
	cfg.Defaults(":8084", "plenary_mailer")
	return cfg, nil
}

// Run runs the mailer until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	log = log.With("service", "mailer")
	pool, err := newPool(cfg.SMTP, cfg.Workers)
	if err != nil {
		return err
	}
	defer pool.Close()

	deps, err := service.Start(ctx, "mailer", cfg.Common, log, events.StreamMail, events.StreamMailStatus, events.StreamDLQ)
	if err != nil {
		return err
	}
	defer deps.Close()

	m := newMailer(deps, pool, cfg.SMTP.From, log)
	app := deps.App()

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return deps.Serve(ctx, app) })
	g.Go(func() error {
		return deps.Bus.Consume(ctx, bus.ConsumerConfig{
			Stream:     events.StreamMail,
			Durable:    "mailer",
			Workers:    cfg.Workers,
			MaxDeliver: cfg.MaxDeliver,
			Backoff:    cfg.backoff,
			// Jobs waiting up to RetryMax for a retry (a greylisting domain)
			// must not hold back the rest: in flight is bounded by Workers.
			MaxAckPending: 10_000,
			AckWait:       cfg.SMTP.Timeout*2 + 10*time.Second,
		}, m.handle)
	})
	log.Info("mailer started", "smtp", cfg.SMTP.Addr, "workers", cfg.Workers)
	return g.Wait()
}
