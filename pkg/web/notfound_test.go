package web_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/testkit"
	"github.com/plenaryhq/plenary/pkg/web"
)

// TestUnknownRoutesDoNotEchoThePath: paths carry participants' tokens, so a
// 404 must not repeat the path (Fiber's default is "Cannot GET <path>"), nor
// may a cache keep it, nor the access log or metrics record it.
func TestUnknownRoutesDoNotEchoThePath(t *testing.T) {
	const secret = "SECRET123"
	var logs testkit.Buffer
	app := newApp(t, slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	app.Get("/gone", func(c *fiber.Ctx) error { return fiber.ErrNotFound })
	tests := []struct {
		name, method, path string
		status             int
	}{
		{"under a route with a token", "GET", "/r/" + secret + "/x", 404},
		{"manage API", "GET", "/api/manage/" + secret + "/x", 404},
		{"POST", "POST", "/r/" + secret + "/x", 404},
		{"handler returns fiber.ErrNotFound", "GET", "/gone?t=" + secret, 404},
		{"wrong method", "POST", "/r/" + secret, 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, app, httptest.NewRequest(tc.method, tc.path, nil))
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problemJSON {
				t.Errorf("Content-Type = %q, want %s", ct, problemJSON)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			var p web.Error
			if err := json.Unmarshal(body, &p); err != nil || p.Status != tc.status || p.Detail == "" {
				t.Errorf("body %s, want a %d problem with a detail (%v)", body, tc.status, err)
			}
			if strings.Contains(string(body), secret) || strings.Contains(string(body), "/r/") {
				t.Errorf("the body echoes the path: %s", body)
			}
		})
	}

	resp, metrics := do(t, app, httptest.NewRequest("GET", "/metrics", nil))
	if resp.StatusCode != http.StatusOK || strings.Contains(string(metrics), secret) {
		t.Errorf("/metrics = %d, and must not name the path: %s", resp.StatusCode, metrics)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the log records the path: %s", logs.String())
	}
	for _, want := range []string{`"route":"unmatched","status":404`, `"route":"unmatched","status":405`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the access log lacks %s: %s", want, logs.String())
		}
	}
}
