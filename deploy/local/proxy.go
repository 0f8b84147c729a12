package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// route picks the service that serves path, as a load balancer in front of
// the services would.
func route(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	at := func(i int) string {
		if i < len(parts) {
			return parts[i]
		}
		return ""
	}
	switch {
	// /admin/events/{id}/{sessions,agenda}...
	case at(0) == "admin" && at(1) == "events" && (at(3) == "sessions" || at(3) == "agenda"):
		return Agenda
	// /api/events/{slug}/agenda..., /e/{slug}/agenda
	case at(0) == "api" && at(1) == "events" && strings.HasPrefix(at(3), "agenda"),
		at(0) == "e" && at(2) == "agenda":
		return Agenda
	// /admin/events/{id}/{emails,announcements,dead-letters}, /admin/emails/...,
	// /u/{token} (unsubscribe from announcements)
	case at(0) == "admin" && at(1) == "events" && (at(3) == "emails" || at(3) == "announcements" || at(3) == "dead-letters"),
		at(0) == "admin" && at(1) == "emails",
		at(0) == "u" && len(parts) == 2:
		return Notification
	}
	return Registration
}

// proxy is the one public listener: it forwards each request to the service
// that owns the route, and serves the stack's own /healthz, /readyz and
// /metrics/{service}.
func (s *Stack) proxy() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		checks, ok := map[string]string{}, true
		for _, name := range serviceNames {
			checks[name] = "ok"
			if err := s.ready(r.Context(), name); err != nil {
				checks[name], ok = err.Error(), false
			}
		}
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"ready": ok, "checks": checks})
	})
	mux.HandleFunc("GET /metrics/{service}", func(w http.ResponseWriter, r *http.Request) {
		s.forward(w, r, r.PathValue("service"), "/metrics")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.forward(w, r, route(r.URL.Path), r.URL.Path)
	})
	return mux
}

// forward serves the request with the service's handler, in this process,
// as path. A service still starting is waited for (a restart, as a load
// balancer would hold the connection); one that is not running gets 503.
func (s *Stack) forward(w http.ResponseWriter, r *http.Request, name, path string) {
	s.mu.Lock()
	svc := s.services[name]
	s.mu.Unlock()
	if svc != nil {
		select {
		case <-svc.mounted:
		case <-r.Context().Done():
			return
		case <-time.After(startWait):
		}
	}
	if path != r.URL.Path {
		r = r.Clone(r.Context())
		r.URL.Path, r.URL.RawPath = path, ""
	}
	if svc == nil || !svc.serve(w, r) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"type": "https://plenary.dev/problems/unavailable", "title": "Service Unavailable", "status": 503,
			"detail": "the " + name + " service is not running; try again in a moment",
		})
	}
}

// startWait is how long a request waits for a service that is starting.
const startWait = 15 * time.Second

func writeJSON(w http.ResponseWriter, status int, v any) {
	ct := "application/json"
	if status >= 400 {
		ct = "application/problem+json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
