package registration

import (
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// Limits on what participants and organizers may send.
const (
	maxName    = 200
	maxAnswer  = 2000
	maxEmail   = 254
	maxOptions = 100
)

var (
	slugRE       = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{1,62})[a-z0-9]$`)
	questionIDRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	countryRE    = regexp.MustCompile(`^[A-Z]{2}$`)
)

func validSlug(s string) bool { return slugRE.MatchString(s) }

// normalizeEmail validates an address and returns it as it is stored and
// written to: the bare address with its domain lowercased and its local
// part as given. Duplicates are found case-insensitively on the whole
// address (emailKey): no mail provider we know of tells "Ada@" from "ada@".
func normalizeEmail(v *web.Validation, s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		v.Add("email", "required")
		return ""
	}
	if len(s) > maxEmail || strings.ContainsAny(s, "\r\n<>\" ,;") {
		v.Add("email", "must be a plain address such as name@example.org")
		return ""
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		v.Add("email", "must be a plain address such as name@example.org")
		return ""
	}
	at := strings.LastIndexByte(s, '@')
	return s[:at] + strings.ToLower(s[at:])
}

var questionTypes = []string{"text", "textarea", "select", "multiselect", "checkbox", "country"}

func validateQuestions(v *web.Validation, qs []Question) {
	seen := map[string]bool{}
	for i, q := range qs {
		f := fmt.Sprintf("questions[%d]", i)
		if !questionIDRE.MatchString(q.ID) {
			v.Add(f+".id", "use lowercase letters, digits, _ or -")
		}
		if seen[q.ID] {
			v.Add(f+".id", "duplicate question id %q", q.ID)
		}
		seen[q.ID] = true
		v.Text(f+".label", q.Label, 500, true)
		if !slices.Contains(questionTypes, q.Type) {
			v.Add(f+".type", "must be one of %s", strings.Join(questionTypes, ", "))
		}
		if (q.Type == "select" || q.Type == "multiselect") && (len(q.Options) == 0 || len(q.Options) > maxOptions) {
			v.Add(f+".options", "a %s needs 1 to %d options", q.Type, maxOptions)
		}
	}
}

// validateAnswers checks answers against the event's questions and returns
// them with unknown keys dropped.
func validateAnswers(v *web.Validation, qs []Question, answers map[string]any) map[string]any {
	out := map[string]any{}
	for _, q := range qs {
		f := "answers." + q.ID
		a, ok := answers[q.ID]
		if !ok || a == nil || a == "" {
			if q.Required {
				v.Add(f, "required")
			}
			continue
		}
		switch q.Type {
		case "checkbox":
			b, ok := a.(bool)
			if !ok {
				v.Add(f, "must be true or false")
				continue
			}
			if q.Required && !b {
				v.Add(f, "must be checked")
			}
			out[q.ID] = b
		case "multiselect":
			list, ok := a.([]any)
			if !ok {
				v.Add(f, "must be a list of options")
				continue
			}
			picked := []string{}
			for _, item := range list {
				s, ok := item.(string)
				if !ok || !slices.Contains(q.Options, s) {
					v.Add(f, "%v is not one of the options", item)
					continue
				}
				picked = append(picked, s)
			}
			out[q.ID] = picked
		default:
			s, ok := a.(string)
			if !ok {
				v.Add(f, "must be text")
				continue
			}
			limit := maxAnswer
			if q.Type != "textarea" {
				limit = 500
			}
			v.Text(f, s, limit, q.Required)
			if q.Type == "select" && !slices.Contains(q.Options, s) {
				v.Add(f, "%q is not one of the options", s)
			}
			if q.Type == "country" && !countryRE.MatchString(s) {
				v.Add(f, "use a two-letter country code such as AT")
			}
			out[q.ID] = s
		}
	}
	return out
}

func decodeState(e *store.Entry, v any) error {
	if err := bson.Unmarshal(e.State, v); err != nil {
		return fmt.Errorf("outbox %s %s: state: %w", e.Kind, e.ID, err)
	}
	return nil
}
