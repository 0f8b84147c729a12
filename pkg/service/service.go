// Package service is the start-up every Plenary service shares: the common
// configuration, connecting to MongoDB and NATS, creating streams, building
// the Fiber app with health and readiness checks, and serving it.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// Common is the configuration every service reads from the environment.
// HTTPAddr and MongoDatabase default per service (see Defaults).
type Common struct {
	HTTPAddr       string        `env:"HTTP_ADDR"`
	MongoURI       string        `env:"MONGODB_URI" envDefault:"mongodb://127.0.0.1:27017"`
	MongoDatabase  string        `env:"MONGODB_DATABASE"`
	NATSURL        string        `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	StreamReplicas int           `env:"NATS_STREAM_REPLICAS" envDefault:"1"`
	ConnectWait    time.Duration `env:"CONNECT_WAIT" envDefault:"15s"`
	// TrustedProxies are the load balancers allowed to set X-Forwarded-For.
	TrustedProxies []string `env:"TRUSTED_PROXIES"`
	// Listener, when set (tests), is served instead of listening on
	// HTTPAddr.
	Listener net.Listener `env:"-"`
	// Mount, when set, hands the service's HTTP handler to a front that
	// serves it in this process (the local stack's one listener) instead
	// of listening. The function it returns takes the handler away again
	// once the requests in flight through it have finished.
	Mount func(http.Handler) (unmount func()) `env:"-"`
}

// Defaults fills HTTPAddr and MongoDatabase when the environment left them
// empty.
func (c *Common) Defaults(addr, database string) {
	if c.HTTPAddr == "" {
		c.HTTPAddr = addr
	}
	if c.MongoDatabase == "" {
		c.MongoDatabase = database
	}
}

// Deps are a running service's connections.
type Deps struct {
	Name    string
	Log     *slog.Logger
	DB      *mongo.Database
	Bus     *bus.Bus
	Metrics *prometheus.Registry
	cfg     Common
}

// Start connects to MongoDB and NATS and creates the streams the service
// publishes to. Close the returned Deps when done.
func Start(ctx context.Context, name string, cfg Common, log *slog.Logger, streams ...string) (*Deps, error) {
	db, err := store.Connect(ctx, cfg.MongoURI, cfg.MongoDatabase, cfg.ConnectWait)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b, err := bus.Connect(ctx, cfg.NATSURL, "plenary-"+name, cfg.ConnectWait, log)
	if err != nil {
		store.Disconnect(db)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := b.EnsureStreams(ctx, cfg.StreamReplicas, streams...); err != nil {
		b.Close()
		store.Disconnect(db)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Deps{Name: name, Log: log, DB: db, Bus: b, Metrics: prometheus.NewRegistry(), cfg: cfg}, nil
}

// App returns the service's Fiber app, with /readyz checking MongoDB and NATS.
func (d *Deps) App() *fiber.App {
	return web.New(web.Config{
		Service:        d.Name,
		Log:            d.Log,
		Metrics:        d.Metrics,
		TrustedProxies: d.cfg.TrustedProxies,
		Ready: map[string]func(context.Context) error{
			"mongodb": func(ctx context.Context) error { return store.Ping(ctx, d.DB) },
			"nats":    d.Bus.Ready,
		},
	})
}

// Serve serves app until ctx ends.
func (d *Deps) Serve(ctx context.Context, app *fiber.App) error {
	if d.cfg.Mount != nil {
		unmount := d.cfg.Mount(web.Handler(app))
		d.Log.Info("http mounted in the front")
		<-ctx.Done()
		unmount()
		return nil
	}
	ln := d.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", d.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("%s: listen: %w", d.Name, err)
		}
	}
	d.Log.Info("http listening", "addr", ln.Addr().String())
	return web.Serve(ctx, app, ln)
}

// Close drains NATS and disconnects MongoDB.
func (d *Deps) Close() {
	d.Bus.Close()
	store.Disconnect(d.DB)
}
