package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// demoPanel is a session of the demo roundtable: day 0 or 1, local times.
type demoPanel struct {
	day                    int
	from, to               string
	title, abstract, room  string
	format, track, meeting string
	speakers               [][2]string // name, affiliation
}

// demoPanels are the roundtable's sessions, from the OSCE's report of it.
var demoPanels = []demoPanel{
	{0, "09:00", "09:30", "Opening remarks", "Why co-ordinated responses across the OSCE and its Asian Partners are expected, sought and feasible.",
		"Neuer Saal", "hybrid", "Plenary", "",
		[][2]string{{"Alena Kupchyna", "OSCE Co-ordinator of Activities to Address Transnational Threats"}, {"Chair of the Asian Partners for Co-operation Group", "Slovak Chairmanship"}}},
	{0, "09:30", "11:30", "Panel I: Preventing and combating trafficking in human beings", "Innovative practices across the OSCE and the Asian Partners for Co-operation.",
		"Neuer Saal", "hybrid", "Human trafficking", "https://meet.example.org/osce-roundtable-panel-1",
		[][2]string{{"Department of Home Affairs", "Australia"}, {"EUROPOL", "European Union"}, {"International Organization for Migration", "IOM Japan"}, {"Border Services", "Afghanistan"}, {"Special Representative for Combating Trafficking in Human Beings", "OSCE"}}},
	{0, "11:30", "12:00", "Coffee break", "", "Foyer", "in_person", "", "", nil},
	{0, "13:30", "15:30", "Panel II: International co-operation against terrorism", "Good practices and innovative tools in enhancing international co-operation against terrorism.",
		"Ratsaal", "hybrid", "Countering terrorism", "https://meet.example.org/osce-roundtable-panel-2",
		[][2]string{{"Head of the Action against Terrorism Unit", "OSCE"}, {"Representative", "European Union"}, {"Representatives", "Afghanistan, Australia, Japan, Republic of Korea, Thailand"}}},
	{1, "09:30", "11:30", "Panel III: Technology at the border", "Biometrics, API/PNR systems, e-passports and automated border gates: facilitating cross-border movement while preventing transnational crime and terrorism.",
		"Neuer Saal", "hybrid", "Border technologies", "https://meet.example.org/osce-roundtable-panel-3",
		[][2]string{{"OSCE Border Management Staff College", "Dushanbe"}, {"Border Security and Management Unit", "OSCE Transnational Threats Department"}}},
	{1, "11:45", "12:30", "Closing: 25 years of the OSCE Asian Partnership for Co-operation", "", "Neuer Saal", "hybrid", "Plenary", "",
		[][2]string{{"External Co-operation Section", "OSCE"}}},
}

// seedDemoAgenda gives the demo event its agenda and publishes it, unless a
// release exists. The agenda service learns of a new event through NATS, so
// the first session is retried until it does.
func (s *Stack) seedDemoAgenda(ctx context.Context) error {
	if status, _, err := s.call(ctx, http.MethodGet, "/api/events/"+demoSlug+"/agenda", nil); err == nil && status == http.StatusOK {
		return nil
	}
	id, err := s.demoEventID(ctx)
	if err != nil {
		return err
	}
	day, err := demoDay()
	if err != nil {
		return err
	}
	for i, p := range demoPanels {
		body, err := p.body(day)
		if err != nil {
			return err
		}
		for wait := time.Now().Add(15 * time.Second); ; {
			status, raw, err := s.call(ctx, http.MethodPost, "/admin/events/"+id+"/sessions", body)
			if err != nil {
				return err
			}
			if status == http.StatusCreated {
				break
			}
			if status != http.StatusNotFound || i > 0 || time.Now().After(wait) {
				return fmt.Errorf("demo session %q: %d %s", p.title, status, raw)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	status, raw, err := s.call(ctx, http.MethodPost, "/admin/events/"+id+"/agenda/releases", map[string]any{"note": "The programme"})
	if err != nil {
		return err
	}
	if status != http.StatusCreated {
		return fmt.Errorf("publish the demo agenda: %d %s", status, raw)
	}
	fmt.Fprintf(s.opts.Out, "Demo agenda: %s/e/%s/agenda\n", s.URL, demoSlug)
	return nil
}

func (s *Stack) demoEventID(ctx context.Context) (string, error) {
	status, raw, err := s.call(ctx, http.MethodGet, "/admin/events", nil)
	if err != nil {
		return "", err
	}
	var list struct {
		Items []struct{ ID, Slug string }
	}
	if err := json.Unmarshal(raw, &list); status != http.StatusOK || err != nil {
		return "", fmt.Errorf("list events: %d %s", status, raw)
	}
	for _, ev := range list.Items {
		if ev.Slug == demoSlug {
			return ev.ID, nil
		}
	}
	return "", fmt.Errorf("the demo event %s is not in the event list", demoSlug)
}

// demoDay is the roundtable's first day, as demoEvent sets it.
func demoDay() (time.Time, error) {
	var ev struct {
		StartsAt time.Time `json:"starts_at"`
	}
	raw, err := json.Marshal(demoEvent())
	if err == nil {
		err = json.Unmarshal(raw, &ev)
	}
	return ev.StartsAt, err
}

func (p demoPanel) body(day time.Time) (map[string]any, error) {
	loc, err := time.LoadLocation("Europe/Vienna")
	if err != nil {
		return nil, err
	}
	clock := func(hm string) (string, error) {
		t, err := time.Parse("15:04", hm)
		if err != nil {
			return "", err
		}
		d := day.In(loc)
		return time.Date(d.Year(), d.Month(), d.Day()+p.day, t.Hour(), t.Minute(), 0, 0, loc).Format(time.RFC3339), nil
	}
	from, err := clock(p.from)
	if err != nil {
		return nil, err
	}
	to, err := clock(p.to)
	if err != nil {
		return nil, err
	}
	speakers := []map[string]string{}
	for _, sp := range p.speakers {
		speakers = append(speakers, map[string]string{"name": sp[0], "affiliation": sp[1]})
	}
	body := map[string]any{
		"title": p.title, "abstract": p.abstract, "starts_at": from, "ends_at": to,
		"room": p.room, "format": p.format, "track": p.track, "speakers": speakers,
	}
	if p.meeting != "" {
		body["join_url"] = p.meeting
	}
	return body, nil
}
