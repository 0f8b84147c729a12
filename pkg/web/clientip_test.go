package web

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func TestClientIPBelievesOnlyTrustedHops(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := map[string]struct {
		trusted []string
		xff     string
		want    string
	}{
		"no proxies trusted: the peer":       {nil, "203.0.113.9", "0.0.0.0"},
		"trusted peer, one hop":              {[]string{"0.0.0.0"}, "203.0.113.9", "203.0.113.9"},
		"spoofed left-most entry is ignored": {[]string{"0.0.0.0"}, "1.2.3.4, 203.0.113.9", "203.0.113.9"},
		"trusted chain is walked":            {[]string{"0.0.0.0", "10.0.0.0/8"}, "1.2.3.4, 203.0.113.9, 10.1.2.3", "203.0.113.9"},
		"garbage stops the walk":             {[]string{"0.0.0.0"}, "1.2.3.4, nonsense", "0.0.0.0"},
		"no header: the peer":                {[]string{"0.0.0.0"}, "", "0.0.0.0"},
		"a hop with a port":                  {[]string{"0.0.0.0"}, "1.2.3.4, 203.0.113.9:4711", "203.0.113.9"},
		"a bracketed IPv6 hop":               {[]string{"0.0.0.0"}, "[2001:db8::1]:4711", "2001:db8::1"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			app := fiber.New()
			app.Use(clientIP(parsePrefixes(tc.trusted, log)))
			app.Get("/", func(c *fiber.Ctx) error { return c.SendString(ClientIP(c)) })
			req := httptest.NewRequest("GET", "/", nil)
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			resp, err := app.Test(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != tc.want {
				t.Fatalf("ClientIP = %q, want %q", body, tc.want)
			}
		})
	}
}

// A proxy that adds its own X-Forwarded-For line after the client's: the
// client's forged line must not win.
func TestClientIPReadsEveryForwardedForLine(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	app := fiber.New()
	app.Use(clientIP(parsePrefixes([]string{"0.0.0.0"}, log)))
	app.Get("/", func(c *fiber.Ctx) error { return c.SendString(ClientIP(c)) })
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Add("X-Forwarded-For", "1.2.3.4")
	req.Header.Add("X-Forwarded-For", "203.0.113.9")
	resp, err := app.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "203.0.113.9" {
		t.Fatalf("ClientIP = %q, want the proxy's line 203.0.113.9", body)
	}
}
