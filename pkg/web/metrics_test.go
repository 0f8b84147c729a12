package web_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/testkit"
)

// TestMetricLabelsOutliveTheRequest sends a form POST and then GETs over one
// keep-alive connection, where fasthttp parses each request into the same
// buffers. A label taken from those buffers without a copy changes under
// the metric: the POST series turned into "GETT", and a later scrape failed
// with "collected before with the same name and label values".
func TestMetricLabelsOutliveTheRequest(t *testing.T) {
	app := newApp(t, testkit.Logger(t), nil)
	app.Post("/e/:slug", func(c *fiber.Ctx) error { return c.SendString(c.FormValue("email")) })
	base := serve(t, app)
	client := &http.Client{Timeout: 5 * time.Second} // its own pool: one connection, reused

	send := func(method, path string) {
		t.Helper()
		var form io.Reader
		if method == http.MethodPost {
			form = strings.NewReader(url.Values{"email": {"ada@example.org"}}.Encode())
		}
		req, err := http.NewRequest(method, base+path, form)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body) // read to the end so the connection is reused
		_ = resp.Body.Close()
	}
	scrape := func() string {
		t.Helper()
		resp, err := client.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics = %d: %s", resp.StatusCode, body)
		}
		return string(body)
	}

	send("POST", "/e/gophercon")
	send("GET", "/events/gophercon")
	send("GET", "/r/some-token")
	scrape()
	send("POST", "/e/gophercon")
	send("GET", "/healthz")
	metrics := scrape()

	want := `http_request_duration_seconds_count{method="POST",route="/e/:slug",status="200"} 2`
	if !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	series := regexp.MustCompile(`http_request_duration_seconds_count\{method="([^"]*)",route="([^"]*)",status="([^"]*)"\}`)
	routes := map[string]bool{"/e/:slug": true, "/events/:slug": true, "/r/:token": true, "/healthz": true, "/metrics": true}
	for _, m := range series.FindAllStringSubmatch(metrics, -1) {
		if m[1] != "GET" && m[1] != "POST" {
			t.Errorf("series %s: method %q was never sent", m[0], m[1])
		}
		if !routes[m[2]] {
			t.Errorf("series %s: route %q is not a route pattern", m[0], m[2])
		}
	}
}
