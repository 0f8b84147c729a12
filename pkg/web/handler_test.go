package web_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/testkit"
	"github.com/plenaryhq/plenary/pkg/web"
)

func TestHandlerServesTheAppInProcess(t *testing.T) {
	app := newApp(t, testkit.Logger(t), nil)
	app.Get("/peer", func(c *fiber.Ctx) error {
		var lines []string
		for _, v := range c.Context().Request.Header.PeekAll("Accept-Language") {
			lines = append(lines, string(v))
		}
		return c.JSON(fiber.Map{"ip": c.IP(), "accept": lines})
	})
	front := httptest.NewServer(web.Handler(app))
	defer front.Close()
	call := func(method, path string, body []byte, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, front.URL+path, bytes.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	if resp, body := call("GET", "/events/gophercon", nil); resp.StatusCode != 200 || string(body) != `{"slug":"gophercon"}` {
		t.Errorf("GET a route: %d %s", resp.StatusCode, body)
	}
	if resp, _ := call("GET", "/events/unknown", nil); resp.StatusCode != 404 || resp.Header.Get("Content-Type") != problemJSON {
		t.Errorf("a problem: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := call("GET", "/healthz", nil); resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("the app's middleware did not run: %v", resp.Header)
	}
	var peer struct {
		IP     string
		Accept []string
	}
	_, body := call("GET", "/peer", nil, "Accept-Language", "fr", "Accept-Language", "de")
	if err := json.Unmarshal(body, &peer); err != nil || peer.IP != "127.0.0.1" || strings.Join(peer.Accept, ",") != "fr,de" {
		t.Errorf("peer and repeated header: %s (%v), want 127.0.0.1 and both lines", body, err)
	}

	full := bytes.Repeat([]byte("a"), web.BodyLimit)
	if resp, body := call("POST", "/echo", full); resp.StatusCode != 200 || len(body) != web.BodyLimit {
		t.Errorf("a body of exactly the limit: %d, %d bytes back", resp.StatusCode, len(body))
	}
	resp, body := call("POST", "/echo", append(full, 'a'))
	var p web.Error
	if err := json.Unmarshal(body, &p); resp.StatusCode != 413 || err != nil || p.Status != 413 || resp.Header.Get("Content-Type") != problemJSON {
		t.Errorf("a body over the limit: %d %s, want a 413 problem", resp.StatusCode, body)
	}
}
