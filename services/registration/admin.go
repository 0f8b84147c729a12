package registration

import (
	"context"
	"encoding/csv"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/web"
)

// registrationQuery selects an event's registrations for organizers.
type registrationQuery struct {
	EventID string
	Status  string // empty: any
	Mode    string // empty: any
	Text    string // in name or address, case-insensitive
	After   string // cursor: the last id of the previous page
	Limit   int64
}

// listRegistrations returns a page of registrations in the order they came
// in, and the cursor of the next page ("" when this is the last).
func (s *regStore) listRegistrations(ctx context.Context, q registrationQuery) ([]Registration, string, error) {
	filter := bson.D{{Key: "event_id", Value: q.EventID}}
	if q.Status != "" {
		filter = append(filter, bson.E{Key: "status", Value: q.Status})
	}
	if q.Mode != "" {
		filter = append(filter, bson.E{Key: "mode", Value: q.Mode})
	}
	if q.After != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: q.After}}})
	}
	if q.Text != "" {
		re := bson.Regex{Pattern: regexp.QuoteMeta(q.Text), Options: "i"}
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "name", Value: re}}, bson.D{{Key: "email", Value: re}},
		}})
	}
	cur, err := s.registrations.Find(ctx, filter,
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(q.Limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("list registrations %s: %w", q.EventID, err)
	}
	out := []Registration{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, "", fmt.Errorf("list registrations %s: %w", q.EventID, err)
	}
	next := ""
	if int64(len(out)) > q.Limit {
		out = out[:q.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

var statuses = []string{events.StatusConfirmed, events.StatusWaitlisted, events.StatusPending, events.StatusRejected, events.StatusCancelled}

func parseRegistrationQuery(c *fiber.Ctx, eventID string) (registrationQuery, error) {
	q := registrationQuery{
		EventID: eventID, Status: c.Query("status"), Mode: c.Query("mode"),
		Text: strings.TrimSpace(c.Query("q")), After: c.Query("cursor"), Limit: 50,
	}
	var v web.Validation
	if q.Status != "" && !contains(statuses, q.Status) {
		v.Add("status", "must be one of %s", strings.Join(statuses, ", "))
	}
	if q.Mode != "" && !contains(modes, q.Mode) {
		v.Add("mode", "must be in_person or online")
	}
	if len(q.Text) > 200 {
		v.Add("q", "at most 200 characters")
	}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			v.Add("limit", "must be a number from 1 to 500")
		}
		q.Limit = int64(n)
	}
	return q, v.Err()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// handleListRegistrations is GET /admin/events/{id}/registrations.
func (r *registrar) handleListRegistrations(c *fiber.Ctx) error {
	ev, err := r.eventByID(c)
	if err != nil {
		return err
	}
	q, err := parseRegistrationQuery(c, ev.ID)
	if err != nil {
		return err
	}
	items, next, err := r.store.listRegistrations(c.UserContext(), q)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"items": items, "next_cursor": next})
}

// handleRegistrationsCSV is GET /admin/events/{id}/registrations.csv: every
// registration, one column per question, for a spreadsheet.
func (r *registrar) handleRegistrationsCSV(c *fiber.Ctx) error {
	ev, err := r.eventByID(c)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s-registrations.csv"`, ev.Slug))
	c.Set(fiber.HeaderCacheControl, "no-store")
	w := csv.NewWriter(c)
	header := []string{"id", "name", "email", "mode", "status", "reason", "locale", "timezone", "registered_at"}
	for _, q := range ev.Questions {
		header = append(header, q.ID)
	}
	if err := w.Write(header); err != nil {
		return err
	}
	q := registrationQuery{EventID: ev.ID, Limit: 500}
	for {
		page, next, err := r.store.listRegistrations(c.UserContext(), q)
		if err != nil {
			return err
		}
		for _, reg := range page {
			row := []string{reg.ID, reg.Name, reg.Email, reg.Mode, reg.Status, reg.Reason, reg.Locale, reg.Timezone,
				reg.CreatedAt.UTC().Format(time.RFC3339)}
			for _, question := range ev.Questions {
				row = append(row, answerText(reg.Answers[question.ID]))
			}
			if err := w.Write(safeCells(row)); err != nil {
				return err
			}
		}
		if next == "" {
			break
		}
		q.After = next
	}
	w.Flush()
	return w.Error()
}

func answerText(a any) string {
	switch v := a.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		if v {
			return "yes"
		}
		return "no"
	case bson.A:
		parts := make([]string, 0, len(v))
		for _, p := range v {
			parts = append(parts, fmt.Sprint(p))
		}
		return strings.Join(parts, "; ")
	}
	return fmt.Sprint(a)
}

// safeCells keeps a spreadsheet from running what participants typed: a
// cell starting with = + - @ (or a tab or CR) is a formula to Excel and
// LibreOffice, so it gets a leading apostrophe (OWASP, CSV injection).
func safeCells(row []string) []string {
	for i, cell := range row {
		if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
			row[i] = "'" + cell
		}
	}
	return row
}
