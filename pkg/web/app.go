package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/helmet"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/middleware/requestid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/plenaryhq/plenary/pkg/events"
)

// BodyLimit is the largest request body accepted; larger ones get 413.
const BodyLimit = 64 << 10

// Config configures a service's Fiber app.
type Config struct {
	Service string
	Log     *slog.Logger
	// Metrics is the service's registry; New adds HTTP and Go metrics to it.
	Metrics *prometheus.Registry
	// Ready checks dependencies for /readyz, by name.
	Ready map[string]func(context.Context) error
	// TrustedProxies are the load balancers (addresses or ranges) whose
	// X-Forwarded-For is believed when finding the client's IP; see ClientIP.
	TrustedProxies []string
}

// New returns a Fiber app with Plenary's defaults and the /healthz, /readyz
// and /metrics routes. Add the service's routes to it.
func New(cfg Config) *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               cfg.Service,
		BodyLimit:             BodyLimit,
		DisableStartupMessage: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		ErrorHandler:          errorHandler(cfg.Log),
	})
	httpReqs := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "http_request_duration_seconds",
		Help:    "HTTP requests by route, method and status.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "method", "status"})
	cfg.Metrics.MustRegister(httpReqs,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	app.Use(recover.New(recover.Config{EnableStackTrace: true, StackTraceHandler: func(c *fiber.Ctx, e any) {
		cfg.Log.Error("panic in handler", "request_id", requestID(c), "panic", e)
	}}))
	app.Use(requestid.New())
	app.Use(traceContext)
	app.Use(clientIP(parsePrefixes(cfg.TrustedProxies, cfg.Log)))
	app.Use(helmet.New(helmet.Config{ReferrerPolicy: "no-referrer", CrossOriginEmbedderPolicy: "unsafe-none"}))
	app.Use(accessLog(cfg.Log, httpReqs))

	app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	app.Get("/readyz", func(c *fiber.Ctx) error {
		ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
		defer cancel()
		checks := fiber.Map{}
		ok := true
		for name, check := range cfg.Ready {
			if err := check(ctx); err != nil {
				checks[name] = err.Error()
				ok = false
				continue
			}
			checks[name] = "ok"
		}
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		return c.Status(status).JSON(fiber.Map{"ready": ok, "checks": checks})
	})
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{})))
	return app
}

// accessLog logs one line per request with the route pattern, never the raw
// path: paths carry participant tokens.
func accessLog(log *slog.Logger, hist *prometheus.HistogramVec) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		err := c.Next()
		status := c.Response().StatusCode()
		if err != nil {
			if p, ok := AsProblem(err); ok {
				status = p.Status
			} else if fe := (*fiber.Error)(nil); errors.As(err, &fe) {
				status = fe.Code
			} else {
				status = http.StatusInternalServerError
			}
		}
		route := routeOf(c, err)
		// c.Method() points into fasthttp's buffer, which the next request on
		// the connection overwrites, and the histogram keeps its label values
		// for good: copied, or a POST series turns into "GETT".
		method := strings.Clone(c.Method())
		elapsed := time.Since(start)
		hist.WithLabelValues(route, method, strconv.Itoa(status)).Observe(elapsed.Seconds())
		if route == "/healthz" || route == "/readyz" || route == "/metrics" {
			return err
		}
		log.Info("http", "method", method, "route", route, "status", status,
			"duration_ms", float64(elapsed.Microseconds())/1000, "request_id", requestID(c),
			"trace_id", events.TraceID(events.TraceFrom(c.UserContext())))
		return err
	}
}

// unmatched is the route that logs and metrics give a request no route of
// the service answered: its raw path may carry a participant's token.
const unmatched = "unmatched"

// routeOf is the route pattern that answered c, never the raw path.
func routeOf(c *fiber.Ctx, err error) string {
	r := c.Route()
	// Before routing (an error fasthttp raised) Fiber stands in a Route
	// without handlers whose Path is the raw path.
	if len(r.Handlers) == 0 || isUnknownRoute(err) {
		return unmatched
	}
	return r.Path
}

// isUnknownRoute reports Fiber's own 404 (no route matched the path, or a
// handler returned fiber.ErrNotFound) and 405 (the path is routed, but not
// for this method). Handlers that find nothing return NotFound instead.
func isUnknownRoute(err error) bool {
	var fe *fiber.Error
	return errors.As(err, &fe) && (fe.Code == http.StatusNotFound || fe.Code == http.StatusMethodNotAllowed)
}

// traceContext continues the caller's W3C trace (a traceparent header) or
// starts one, and puts it in the request's context: events published while
// handling the request carry it on.
func traceContext(c *fiber.Ctx) error {
	tp := events.ChildTraceParent(c.Get(events.TraceHeader))
	c.SetUserContext(events.WithTrace(c.UserContext(), tp))
	return c.Next()
}

func requestID(c *fiber.Ctx) string {
	if id, ok := c.Locals(requestid.ConfigDefault.ContextKey).(string); ok {
		return id
	}
	return ""
}

func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		p, ok := AsProblem(err)
		var fe *fiber.Error
		switch {
		case ok: // the handler's own problem, as it is
		case isUnknownRoute(err):
			// Fiber's message repeats the path ("Cannot GET /r/<token>/x"),
			// and the path may hold a token: answer without it, and keep
			// caches from storing the URL with the answer.
			p = NotFound("there is nothing at this address; check the link you were given")
			if errors.As(err, &fe) && fe.Code == http.StatusMethodNotAllowed {
				p = Problem(http.StatusMethodNotAllowed, "method_not_allowed", "this address does not take this HTTP method")
			}
			c.Set(fiber.HeaderCacheControl, "no-store")
		case errors.As(err, &fe):
			p = Problem(fe.Code, strings.ReplaceAll(strings.ToLower(http.StatusText(fe.Code)), " ", "_"), fe.Message)
		default:
			log.Error("request failed", "route", routeOf(c, err), "request_id", requestID(c), "err", err)
			p = Problem(http.StatusInternalServerError, "internal", "something went wrong on our side; try again later (request id "+requestID(c)+")")
		}
		// JSON's optional argument sets the content type; without it JSON
		// would overwrite a header set beforehand with application/json.
		return c.Status(p.Status).JSON(p, "application/problem+json")
	}
}

// Tokens drops blank entries (a stray comma in ADMIN_TOKENS) and spaces.
func Tokens(raw []string) []string {
	var out []string
	for _, t := range raw {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// Bearer requires an Authorization: Bearer header carrying one of tokens,
// compared in constant time. A token may be named, "secretariat:<token>";
// the name of the token used is kept for the handler (see Organizer). An
// unnamed token is called "organizer".
func Bearer(tokens []string) fiber.Handler {
	named := parseTokens(tokens)
	return func(c *fiber.Ctx) error {
		scheme, got, ok := strings.Cut(c.Get(fiber.HeaderAuthorization), " ")
		if ok && strings.EqualFold(scheme, "Bearer") && got != "" {
			match, name := 0, ""
			for _, t := range named {
				// Every token is compared, so the time taken does not
				// tell which one matched.
				if subtle.ConstantTimeCompare([]byte(got), []byte(t.secret)) == 1 {
					match, name = 1, t.name
				}
			}
			if match == 1 {
				c.Locals(organizerKey{}, name)
				return c.Next()
			}
		}
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="plenary"`)
		return Problem(http.StatusUnauthorized, "unauthorized", "this route needs an organizer token: Authorization: Bearer <token>")
	}
}

type organizerKey struct{}

// Organizer is the name of the organizer token that authorised the request
// ("organizer" for an unnamed token), or "" outside Bearer.
func Organizer(c *fiber.Ctx) string {
	name, _ := c.Locals(organizerKey{}).(string)
	return name
}

type namedToken struct{ name, secret string }

// tokenName is what may name a token: letters, digits, '.', '_' and '-'.
var tokenName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// parseTokens splits "name:secret" entries; an entry whose part before the
// first colon is not a name is an unnamed token.
func parseTokens(tokens []string) []namedToken {
	var out []namedToken
	for _, t := range tokens {
		name, secret, ok := strings.Cut(t, ":")
		if !ok || !tokenName.MatchString(name) || secret == "" {
			name, secret = "organizer", t
		}
		if secret != "" {
			out = append(out, namedToken{name: name, secret: secret})
		}
	}
	return out
}

// Serve serves app on ln until ctx ends, then shuts down, giving requests in
// flight up to 10 seconds.
func Serve(ctx context.Context, app *fiber.App, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		if err := app.ShutdownWithTimeout(10 * time.Second); err != nil {
			return err
		}
		return <-errc
	}
}
