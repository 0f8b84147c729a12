package registration

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestOrganizersListAndExportRegistrations(t *testing.T) {
	h := newHarness(t)
	ev := h.createEvent("listing", func(b map[string]any) {
		b["capacity"] = map[string]any{"in_person": 2}
		b["questions"] = []map[string]any{
			{"id": "organisation", "label": "Organisation", "type": "text"},
			{"id": "panels", "label": "Panels", "type": "multiselect", "options": []string{"Borders", "Trafficking"}},
		}
	})
	people := []struct{ name, email, mode, org string }{
		{"Alena Kupchyna", "alena@example.org", "in_person", "OSCE"},
		{"Bob Axb", "bob@example.org", "in_person", "=HYPERLINK(\"http://evil.example\")"},
		{"Carla", "carla@example.org", "in_person", "EUROPOL"}, // full: rejected
		{"Dai", "dai@example.org", "online", "IOM Japan"},
	}
	for _, p := range people {
		r := h.pub.Do(t, "POST", "/api/events/listing/registrations", map[string]any{
			"name": p.name, "email": p.email, "mode": p.mode, "consent": true,
			"answers": map[string]any{"organisation": p.org, "panels": []string{"Borders", "Trafficking"}},
		})
		if r.Status != http.StatusAccepted {
			t.Fatalf("register %s: %d %s", p.email, r.Status, r.Body)
		}
	}
	type page struct {
		Items []struct {
			Email, Status, Mode string
		}
		NextCursor string `json:"next_cursor"`
	}
	list := func(query string) page {
		t.Helper()
		var p page
		r := h.admin.Do(t, "GET", "/admin/events/"+ev.ID+"/registrations"+query, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("list %s: %d %s", query, r.Status, r.Body)
		}
		r.JSON(t, &p)
		return p
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if n := len(list("").Items); n != 4 {
			return fmt.Errorf("%d registrations listed, want 4", n)
		}
		return nil
	})

	cases := map[string]struct {
		query string
		want  []string
	}{
		"confirmed":              {"?status=confirmed", []string{"alena@example.org", "bob@example.org", "dai@example.org"}},
		"rejected":               {"?status=rejected", []string{"carla@example.org"}},
		"online":                 {"?mode=online", []string{"dai@example.org"}},
		"search, any case":       {"?q=KUPCH", []string{"alena@example.org"}},
		"search is not a regexp": {"?q=a.b", nil},
		"search in addresses":    {"?q=carla@", []string{"carla@example.org"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, it := range list(tc.query).Items {
				got = append(got, it.Email)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("%s listed %v, want %v", tc.query, got, tc.want)
			}
		})
	}

	// Pages of two follow each other without gaps or repeats.
	first := list("?limit=2")
	second := list("?limit=2&cursor=" + first.NextCursor)
	if len(first.Items) != 2 || first.NextCursor == "" || len(second.Items) != 2 || second.NextCursor != "" {
		t.Fatalf("pages: %+v then %+v", first, second)
	}
	if first.Items[1].Email == second.Items[0].Email {
		t.Fatal("the second page repeats the first")
	}
	if r := h.admin.Do(t, "GET", "/admin/events/"+ev.ID+"/registrations?status=maybe&limit=9999", nil); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("bad filters: %d", r.Status)
	}
	if r := h.pub.Do(t, "GET", "/admin/events/"+ev.ID+"/registrations", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", r.Status)
	}

	r := h.admin.Do(t, "GET", "/admin/events/"+ev.ID+"/registrations.csv", nil)
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(r.Header.Get("Content-Disposition"), "listing-registrations.csv") {
		t.Fatalf("csv: %d %v", r.Status, r.Header)
	}
	rows, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 || strings.Join(rows[0], ",") != "id,name,email,mode,status,reason,locale,timezone,registered_at,organisation,panels" {
		t.Fatalf("csv rows: %v", rows)
	}
	byEmail := map[string][]string{}
	for _, row := range rows[1:] {
		byEmail[row[2]] = row
	}
	if got := byEmail["bob@example.org"][9]; !strings.HasPrefix(got, "'=") {
		t.Errorf("a formula reached the spreadsheet unescaped: %q", got)
	}
	if got := byEmail["alena@example.org"][10]; got != "Borders; Trafficking" {
		t.Errorf("multiselect answer %q", got)
	}
	if byEmail["carla@example.org"][4] != events.StatusRejected {
		t.Errorf("carla's status %q", byEmail["carla@example.org"][4])
	}
}
