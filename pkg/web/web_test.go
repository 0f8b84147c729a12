package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plenaryhq/plenary/pkg/testkit"
	"github.com/plenaryhq/plenary/pkg/web"
)

const problemJSON = "application/problem+json"

// newApp returns web.New with a few routes that fail in each way a handler
// can, and the organizer route /admin behind Bearer.
func newApp(t *testing.T, log *slog.Logger, ready map[string]func(context.Context) error) *fiber.App {
	t.Helper()
	app := web.New(web.Config{Service: "test", Log: log, Metrics: prometheus.NewRegistry(), Ready: ready})
	app.Get("/events/:slug", func(c *fiber.Ctx) error {
		if c.Params("slug") == "gophercon" {
			return c.JSON(fiber.Map{"slug": "gophercon"})
		}
		return web.NotFound("no event " + c.Params("slug"))
	})
	app.Post("/registrations", func(c *fiber.Ctx) error {
		var v web.Validation
		v.Add("email", "%q is not an email address", "ada")
		v.Add("mode", "must be in_person or online")
		return v.Err()
	})
	app.Post("/echo", func(c *fiber.Ctx) error { return c.Send(c.Body()) })
	app.Get("/closed", func(c *fiber.Ctx) error {
		return fmt.Errorf("register: %w", web.Conflict("registration_closed", "registration closed on 2020-11-08"))
	})
	app.Get("/internal", func(c *fiber.Ctx) error {
		return errors.New("mongo: auth failed for user plenary password hunter2")
	})
	app.Get("/panic", func(c *fiber.Ctx) error { panic("nil map write") })
	app.Get("/r/:token", func(c *fiber.Ctx) error { return c.SendString("manage") })
	app.Get("/admin", web.Bearer([]string{"", "organizer-token", "second-token"}), func(c *fiber.Ctx) error {
		return c.SendString("admin")
	})
	return app
}

func do(t *testing.T, app *fiber.App, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := app.Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestProblems(t *testing.T) {
	app := newApp(t, testkit.Logger(t), nil)
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		code         string
		detail       string // a substring of the detail
		fields       []string
	}{
		{"not found", "GET", "/events/nope", "", 404, "not_found", "no event nope", nil},
		{"wrapped conflict", "GET", "/closed", "", 409, "registration_closed", "closed on 2020-11-08", nil},
		{"validation", "POST", "/registrations", "{}", 422, "validation", "email, mode", []string{"email", "mode"}},
		{"unknown route", "GET", "/nowhere", "", 404, "not_found", "", nil},
		{"wrong method", "DELETE", "/healthz", "", 405, "method_not_allowed", "", nil},
		{"internal error", "GET", "/internal", "", 500, "internal", "try again later", nil},
		{"panic", "GET", "/panic", "", 500, "internal", "try again later", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, app, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problemJSON {
				t.Errorf("Content-Type = %q, want %s", ct, problemJSON)
			}
			var p web.Error
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("body %s is not a problem: %v", body, err)
			}
			if p.Type != web.ProblemBase+tc.code || p.Status != tc.status || p.Title != http.StatusText(tc.status) {
				t.Errorf("problem = %+v, want type %s status %d title %q", p, web.ProblemBase+tc.code, tc.status, http.StatusText(tc.status))
			}
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tc.detail)
			}
			var fields []string
			for _, f := range p.Errors {
				fields = append(fields, f.Field)
				if f.Message == "" {
					t.Errorf("field %s has no message", f.Field)
				}
			}
			if strings.Join(fields, ",") != strings.Join(tc.fields, ",") {
				t.Errorf("errors name fields %v, want %v", fields, tc.fields)
			}
		})
	}
}

func TestInternalErrorsDoNotLeak(t *testing.T) {
	app := newApp(t, testkit.Logger(t), nil)
	for _, path := range []string{"/internal", "/panic"} {
		t.Run(path, func(t *testing.T) {
			resp, body := do(t, app, httptest.NewRequest("GET", path, nil))
			for _, secret := range []string{"hunter2", "mongo", "nil map", "goroutine", ".go:"} {
				if bytes.Contains(body, []byte(secret)) {
					t.Errorf("response leaks %q: %s", secret, body)
				}
			}
			// The detail gives the request id to quote to support.
			if id := resp.Header.Get("X-Request-Id"); id == "" || !bytes.Contains(body, []byte(id)) {
				t.Errorf("body %s should quote the request id %q", body, id)
			}
		})
	}
}

func TestValidationErr(t *testing.T) {
	var v web.Validation
	if err := v.Err(); err != nil {
		t.Fatalf("empty Validation.Err() = %v, want nil", err)
	}
	v.Add("email", "%s is required", "email")
	p, ok := web.AsProblem(v.Err())
	if !ok || p.Status != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Message != "email is required" {
		t.Fatalf("Validation.Err() = %+v, want a 422 naming email", p)
	}
}

// serve runs app on a free port until t ends and returns its base URL.
// app.Test cannot show a 413: it returns the server's read error instead of
// the response, so this goes over a real connection.
func serve(t *testing.T, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- web.Serve(ctx, app, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return within 5s of cancel")
		}
	})
	return "http://" + ln.Addr().String()
}

func TestBodyLimit(t *testing.T) {
	base := serve(t, newApp(t, testkit.Logger(t), nil))
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post(base+"/echo", "text/plain", bytes.NewReader(bytes.Repeat([]byte("a"), web.BodyLimit)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != web.BodyLimit {
		t.Fatalf("a body of exactly %d bytes: status %d, %d bytes echoed; want 200 and all of it", web.BodyLimit, resp.StatusCode, len(body))
	}

	for _, size := range []int{web.BodyLimit + 1, 1 << 30} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			// The request only announces its size: the server must refuse it
			// before reading the body. (Sending the body too would race the
			// server's close against the client's write.)
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", size)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status = %d, want 413", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problemJSON {
				t.Errorf("Content-Type = %q, want %s", ct, problemJSON)
			}
			var p web.Error
			if err := json.Unmarshal(body, &p); err != nil || p.Status != http.StatusRequestEntityTooLarge || p.Type != web.ProblemBase+"request_entity_too_large" {
				t.Errorf("body %s, want a 413 problem (%v)", body, err)
			}
		})
	}
}

func TestBearer(t *testing.T) {
	app := newApp(t, testkit.Logger(t), nil)
	tests := []struct {
		name   string
		header string
		status int
	}{
		{"no header", "", 401},
		{"empty token", "Bearer ", 401},
		{"wrong token", "Bearer guess", 401},
		{"prefix of the token", "Bearer organizer", 401},
		{"token without scheme", "organizer-token", 401},
		{"basic auth", "Basic b3JnYW5pemVyLXRva2Vu", 401},
		{"right token", "Bearer organizer-token", 200},
		{"second token", "Bearer second-token", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/admin", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, body := do(t, app, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, tc.status, body)
			}
			challenge := resp.Header.Get("WWW-Authenticate")
			if tc.status == 401 {
				if !strings.HasPrefix(challenge, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", challenge)
				}
				if ct := resp.Header.Get("Content-Type"); ct != problemJSON {
					t.Errorf("Content-Type = %q, want %s", ct, problemJSON)
				}
			} else if string(body) != "admin" {
				t.Errorf("body = %q, want the route's", body)
			}
		})
	}
}

func TestBearerNamesTheOrganizer(t *testing.T) {
	app := web.New(web.Config{Service: "test", Log: testkit.Logger(t), Metrics: prometheus.NewRegistry()})
	app.Get("/", web.Bearer([]string{"secretariat:s3cret", "plain-token", "not a name:odd"}),
		func(c *fiber.Ctx) error { return c.SendString(web.Organizer(c)) })
	for header, want := range map[string]string{
		"Bearer s3cret":             "secretariat",
		"Bearer plain-token":        "organizer",
		"Bearer not a name:odd":     "organizer",
		"Bearer secretariat:s3cret": "", // the name is not part of the token
		"Bearer secretariat":        "",
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", header)
		resp, body := do(t, app, req)
		switch {
		case want == "" && resp.StatusCode != 401:
			t.Errorf("%q: %d, want 401", header, resp.StatusCode)
		case want != "" && (resp.StatusCode != 200 || string(body) != want):
			t.Errorf("%q: %d %q, want 200 %q", header, resp.StatusCode, body, want)
		}
	}
}

func TestBearerWithNoTokensRejectsEveryone(t *testing.T) {
	app := web.New(web.Config{Service: "test", Log: testkit.Logger(t), Metrics: prometheus.NewRegistry()})
	app.Get("/", web.Bearer([]string{""}), func(c *fiber.Ctx) error { return c.SendString("in") })
	for _, header := range []string{"", "Bearer ", "Bearer  "} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", header)
		resp, _ := do(t, app, req)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status = %d, want 401: an unset token must not open the route", header, resp.StatusCode)
		}
	}
}

func TestHealthz(t *testing.T) {
	app := newApp(t, testkit.Logger(t), nil)
	resp, body := do(t, app, httptest.NewRequest("GET", "/healthz", nil))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("/healthz = %d %s, want 200 ok", resp.StatusCode, body)
	}
}

func TestReadyz(t *testing.T) {
	ok := func(ctx context.Context) error {
		if _, has := ctx.Deadline(); !has {
			return errors.New("check ran without a deadline")
		}
		return nil
	}
	down := func(context.Context) error { return errors.New("nats: not connected") }
	tests := []struct {
		name   string
		checks map[string]func(context.Context) error
		status int
		want   map[string]string // check name → substring of its result
	}{
		{"no checks", nil, 200, map[string]string{}},
		{"all pass", map[string]func(context.Context) error{"mongo": ok, "nats": ok}, 200,
			map[string]string{"mongo": "ok", "nats": "ok"}},
		{"one fails", map[string]func(context.Context) error{"mongo": ok, "nats": down}, 503,
			map[string]string{"mongo": "ok", "nats": "not connected"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := newApp(t, testkit.Logger(t), tc.checks)
			resp, body := do(t, app, httptest.NewRequest("GET", "/readyz", nil))
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			var got struct {
				Ready  bool              `json:"ready"`
				Checks map[string]string `json:"checks"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if got.Ready != (tc.status == 200) {
				t.Errorf("ready = %v with status %d", got.Ready, tc.status)
			}
			if len(got.Checks) != len(tc.want) {
				t.Errorf("checks = %v, want %d of them", got.Checks, len(tc.want))
			}
			for name, want := range tc.want {
				if !strings.Contains(got.Checks[name], want) {
					t.Errorf("check %s = %q, want it to contain %q", name, got.Checks[name], want)
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	app := newApp(t, testkit.Logger(t), nil)
	do(t, app, httptest.NewRequest("GET", "/events/gophercon", nil))
	do(t, app, httptest.NewRequest("GET", "/events/nope", nil))
	do(t, app, httptest.NewRequest("GET", "/events/nope", nil))
	do(t, app, httptest.NewRequest("GET", "/internal", nil))

	resp, body := do(t, app, httptest.NewRequest("GET", "/metrics", nil))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Requests are counted by route pattern and by the status the client
	// got, including statuses set by the error handler.
	for _, want := range []string{
		`http_request_duration_seconds_count{method="GET",route="/events/:slug",status="200"} 1`,
		`http_request_duration_seconds_count{method="GET",route="/events/:slug",status="404"} 2`,
		`http_request_duration_seconds_count{method="GET",route="/internal",status="500"} 1`,
		`go_goroutines `,
		`process_`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(body), "/events/nope") {
		t.Error("/metrics labels a raw path; it must use the route pattern")
	}
}

func TestSecurityHeadersAndRequestID(t *testing.T) {
	app := newApp(t, testkit.Logger(t), nil)
	seen := map[string]bool{}
	for _, path := range []string{"/healthz", "/events/nope"} {
		resp, _ := do(t, app, httptest.NewRequest("GET", path, nil))
		if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
			t.Errorf("%s: Referrer-Policy = %q, want no-referrer", path, got)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options = %q, want nosniff", path, got)
		}
		id := resp.Header.Get("X-Request-Id")
		if id == "" || seen[id] {
			t.Errorf("%s: X-Request-Id = %q, want a fresh id", path, id)
		}
		seen[id] = true
	}
}

func TestAccessLogHasRouteNotPath(t *testing.T) {
	var out testkit.Buffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	app := newApp(t, log, nil)
	resp, _ := do(t, app, httptest.NewRequest("GET", "/r/secret-manage-token", nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	logs := out.String()
	if strings.Contains(logs, "secret-manage-token") {
		t.Errorf("the access log carries the participant token: %s", logs)
	}
	if !strings.Contains(logs, `"route":"/r/:token"`) || !strings.Contains(logs, `"status":200`) || !strings.Contains(logs, `"request_id"`) {
		t.Errorf("the access log lacks route, status or request id: %s", logs)
	}
}

// startServe runs web.Serve on a loopback port until stop is called; stop
// returns what Serve returned, failing the test if that takes over within.
func startServe(t *testing.T) (addr string, stop func(within time.Duration) error) {
	t.Helper()
	app := newApp(t, testkit.Logger(t), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- web.Serve(ctx, app, ln) }()
	return ln.Addr().String(), func(within time.Duration) error {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(within):
			t.Fatalf("Serve did not return within %s of cancel", within)
			return nil
		}
	}
}

// getHealthz waits until GET /healthz answers 200.
func getHealthz(t *testing.T, client *http.Client, url string) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /healthz = %d", resp.StatusCode)
		}
		return nil
	})
}

func TestServe(t *testing.T) {
	addr, stop := startServe(t)
	url := "http://" + addr + "/healthz"
	client := &http.Client{Timeout: time.Second}
	getHealthz(t, client, url)
	if err := stop(5 * time.Second); err != nil {
		t.Fatalf("Serve = %v after cancel, want nil", err)
	}
	client.CloseIdleConnections()
	if resp, err := client.Get(url); err == nil {
		_ = resp.Body.Close()
		t.Fatal("the server still answers after Serve returned")
	}
}

// A client may open a connection and never send on it: Go's transport dials
// spare connections when requests race, browsers preconnect. fasthttp before
// v1.78 counted such a connection as active and waited ReadTimeout (30 s) for
// its first request, so a shutdown timed out with context deadline exceeded.
func TestServeStopsWithASilentConnection(t *testing.T) {
	addr, stop := startServe(t)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// One request on another connection shows the server has accepted, so
	// the silent connection is in its hands too.
	getHealthz(t, &http.Client{Timeout: time.Second}, "http://"+addr+"/healthz")
	if err := stop(15 * time.Second); err != nil {
		t.Fatalf("Serve = %v with a silent connection open, want nil", err)
	}
}
