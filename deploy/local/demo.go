package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// demoSlug is the demo event: the roundtable that started Plenary, moved a
// year ahead of now so it is open for registration.
const demoSlug = "osce-asian-partners-roundtable"

func demoEvent() map[string]any {
	vienna, _ := time.LoadLocation("Europe/Vienna")
	now := time.Now().In(vienna)
	day := time.Date(now.Year()+1, time.November, 9, 9, 0, 0, 0, vienna)
	return map[string]any{
		"slug":  demoSlug,
		"title": "Leveraging innovation and technology to address 21st century security challenges and crises across the OSCE and Asian Partners for Co-operation",
		"description": "A two-day roundtable, online and in Vienna, organized by the OSCE Border Security and Management Unit/Transnational Threats Department, " +
			"the Slovak Chair of the OSCE Asian Partners for Co-operation Group, the OSCE Border Management Staff College and the OSCE External Co-operation Section.",
		"timezone":  "Europe/Vienna",
		"starts_at": day.Format(time.RFC3339),
		"ends_at":   day.AddDate(0, 0, 1).Add(8*time.Hour + 30*time.Minute).Format(time.RFC3339),
		"venue":     map[string]any{"name": "Hofburg Congress Center", "address": "Heldenplatz, 1010 Vienna, Austria"},
		"online":    map[string]any{"join_url": "https://meet.example.org/osce-roundtable", "opens_minutes_before": 15},
		"capacity":  map[string]any{"in_person": 60, "online": 150},
		"registration": map[string]any{
			"approval": "auto", "waitlist": true,
		},
		"questions": []map[string]any{
			{"id": "organisation", "label": "Organisation or delegation", "type": "text", "required": true},
			{"id": "country", "label": "Country", "type": "country", "required": false},
			{"id": "panel", "label": "Panel of most interest", "type": "select", "required": false,
				"options": []string{"Human trafficking", "Countering terrorism", "Border technologies"}},
		},
		"locales":        []string{"en", "fr", "de", "ru"},
		"reminders":      []string{"24h", "1h"},
		"retention_days": 365,
	}
}

// seedDemo creates the demo event and its agenda through the public API
// unless they exist.
func (s *Stack) seedDemo(ctx context.Context) error {
	if status, _, err := s.call(ctx, http.MethodGet, "/api/events/"+demoSlug, nil); err != nil || status != http.StatusOK {
		status, body, err := s.call(ctx, http.MethodPost, "/admin/events", demoEvent())
		if err != nil {
			return err
		}
		if status != http.StatusCreated {
			return fmt.Errorf("create demo event: %d %s", status, body)
		}
		fmt.Fprintf(s.opts.Out, "Demo event: %s/e/%s\n", s.URL, demoSlug)
	}
	return s.seedDemoAgenda(ctx)
}

func (s *Stack) call(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}
