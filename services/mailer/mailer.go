// Package mailer is Plenary's SMTP worker. It consumes the MAIL stream in
// batches, sends each job over a pool of SMTP connections kept open and
// reused, records what it sent so a redelivered job is not sent again, and
// publishes each job's status (sent, deferred, failed) on MAIL_STATUS.
package mailer

import (
	"context"
	"fmt"
	"log/slog"
	"math"
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
	// Workers is how many SMTP connections send at once; never more are
	// open. By default it also bounds the emails a crash can send twice
	// (see MaxUnrecorded).
	Workers int `env:"MAILER_WORKERS" envDefault:"4"`
	// MaxUnrecorded is the most emails sent and not yet recorded in the
	// sent ledger at any moment: the most a crash can make the mailer send
	// twice. 0 means Workers, one per connection. The mailer's throughput is
	// at most MaxUnrecorded per ledger write's latency: raising it trades
	// that bound for speed when the ledger is slow.
	MaxUnrecorded int `env:"MAILER_MAX_UNRECORDED" envDefault:"0"`
	// RateLimit caps the emails handed to the relay per second, all
	// connections together (0: no limit), for relays that cap senders.
	RateLimit float64 `env:"MAILER_RATE_LIMIT" envDefault:"0"`
	// Batch is the most jobs taken from MAIL at once; their statuses are
	// published as one atomic batch. With a rate limit, a batch holds at
	// most about a second's worth, so a shutdown finishes it quickly.
	Batch int `env:"MAILER_BATCH" envDefault:"256"`
	// BatchLinger is how long a batch waits for more jobs once the first
	// has arrived.
	BatchLinger time.Duration `env:"MAILER_BATCH_LINGER" envDefault:"20ms"`
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

// ackWait is how long NATS waits for a sign of life before it gives a job to
// another worker. ConsumeBatch signals every third of it while a batch is
// handled; an email whose send began before the signals stopped ends within
// SMTP_TIMEOUT, less than the two thirds left (see mailer.lease).
func (c Config) ackWait() time.Duration {
	return max(2*c.SMTP.Timeout, 2*time.Second)
}

// maxUnrecorded is MaxUnrecorded, by default one per connection.
func (c Config) maxUnrecorded() int {
	if c.MaxUnrecorded > 0 {
		return c.MaxUnrecorded
	}
	return c.Workers
}

// batchSize is Batch, or about a second's worth of emails under a rate
// limit.
func (c Config) batchSize() int {
	n := max(c.Batch, 1)
	if c.RateLimit > 0 {
		n = min(n, max(c.Workers, int(math.Ceil(c.RateLimit))))
	}
	return n
}

// SMTPConfig says where and how to send.
type SMTPConfig struct {
	Addr     string `env:"SMTP_ADDR" envDefault:"127.0.0.1:1025"`
	Username string `env:"SMTP_USERNAME"`
	Password string `env:"SMTP_PASSWORD"`
	// TLS is none, opportunistic (STARTTLS if offered), starttls (required)
	// or implicit (TLS from the first byte, port 465).
	TLS  string `env:"SMTP_TLS" envDefault:"opportunistic"`
	From string `env:"SMTP_FROM" envDefault:"Plenary <no-reply@plenary.localhost>"`
	// Timeout bounds dialling and each email's whole exchange with the
	// server.
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

// batchesInFlight is how many batches are handled at once: while one
// publishes its statuses and is settled, the next keeps the connections
// busy.
const batchesInFlight = 2

// Run runs the mailer until ctx ends. It then finishes the batches in hand
// (sends, records, statuses, acks) before it closes the SMTP connections.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	log = log.With("service", "mailer")
	if cfg.Workers < 1 {
		return fmt.Errorf("mailer: MAILER_WORKERS %d: want at least 1", cfg.Workers)
	}
	if _, err := newDialer(cfg.SMTP); err != nil {
		return err
	}
	deps, err := service.Start(ctx, "mailer", cfg.Common, log,
		events.StreamMail, events.StreamMailStatus, events.StreamDLQ, events.StreamMailSent)
	if err != nil {
		return err
	}
	defer deps.Close()

	m, err := newMailer(ctx, deps, cfg, log)
	if err != nil {
		return err
	}
	// Deferred, so it runs once ConsumeBatch has returned: every batch it
	// took is finished by then.
	defer m.close()
	app := deps.App()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return deps.Serve(gctx, app) })
	if old := m.ledger.legacy; old != nil {
		g.Go(func() error {
			// No job older than MAIL's retention can come back.
			old.retire(gctx, events.MailRetention)
			return nil
		})
	}
	g.Go(func() error {
		return deps.Bus.ConsumeBatch(gctx, bus.ConsumerConfig{
			Stream:     events.StreamMail,
			Durable:    "mailer",
			Workers:    batchesInFlight,
			MaxDeliver: cfg.MaxDeliver,
			Backoff:    cfg.backoff,
			// Jobs waiting up to RetryMax for a retry (a greylisting domain)
			// must not hold back the rest.
			MaxAckPending: 10_000,
			AckWait:       cfg.ackWait(),
		}, cfg.batchSize(), cfg.BatchLinger, m.handleBatch)
	})
	log.Info("mailer started", "smtp", cfg.SMTP.Addr, "workers", cfg.Workers, "max_unrecorded", cfg.maxUnrecorded(), "rate_limit", cfg.RateLimit,
		"batch", cfg.batchSize(), "ack_wait", cfg.ackWait().String())
	return g.Wait()
}

// newMailer builds the mailer's ledger and connection pool on deps.
func newMailer(ctx context.Context, deps *service.Deps, cfg Config, log *slog.Logger) (*mailer, error) {
	met := newMetrics(deps.Metrics)
	sent, err := newLedger(ctx, deps.Bus, deps.DB, cfg.maxUnrecorded(), cfg.SMTP.Timeout, met, log)
	if err != nil {
		return nil, err
	}
	p, err := newPool(cfg.SMTP, cfg.Workers, cfg.RateLimit, sent, met)
	if err != nil {
		sent.close()
		return nil, err
	}
	return &mailer{bus: deps.Bus, pool: p, ledger: sent, log: log, m: met}, nil
}

// close closes the SMTP connections once the workers are done, then waits
// for the last records.
func (m *mailer) close() {
	m.pool.close()
	m.ledger.close()
}
