package registration

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/web"
)

// Pages are server-rendered, work without JavaScript, and speak the six
// languages of pkg/i18n: ?lang= first, then the participant's locale, then
// the browser's Accept-Language.

//go:embed templates/*.html
var templateFiles embed.FS

var pageTemplates = template.Must(template.New("pages").Funcs(template.FuncMap{
	"tr": (*i18n.Localizer).Tf,
	"field": func(p *page, field, id string) map[string]any {
		return map[string]any{"Errors": p.Errors, "Field": field, "ID": id}
	},
	"has":      func(form url.Values, key, value string) bool { return slices.Contains(form[key], value) },
	"modeName": modeName,
}).ParseFS(templateFiles, "templates/*.html"))

// page is what every template sees.
type page struct {
	L      *i18n.Localizer
	Title  string
	Detail string
	Langs  []lang
	Event  *Event
	When   string
	Form   url.Values
	Errors map[string]string
	// ErrorList is Errors in form order, for the summary at the top.
	ErrorList []fieldError
	Zones     []string
	Zone      string
	Locale    string
	// Session is the agenda session a join page is about; the language
	// links keep it.
	Session string

	// Event page.
	Done   bool
	Closed string
	Seats  map[string]bool

	// Manage page.
	View      *manageView
	Token     string
	Status    string
	Flash     string
	Live      bool
	CheckedIn string
	Opens     string
}

type lang struct{ Code, Name string }

type fieldError struct{ ID, Label, Message string }

var langs = func() []lang {
	out := make([]lang, 0, len(i18n.Supported))
	for _, code := range i18n.Supported {
		out = append(out, lang{Code: code, Name: i18n.Names[code]})
	}
	return out
}()

func modeName(l *i18n.Localizer, mode string) string {
	if mode == "online" {
		return l.T("manage.mode_online")
	}
	return l.T("manage.mode_in_person")
}

// localizer picks the page's language; stored is the participant's locale
// ("" when unknown).
func (r *registrar) localizer(c *fiber.Ctx, stored string) *i18n.Localizer {
	q := c.Query("lang")
	if q == "" && c.Method() == fiber.MethodPost {
		if form, err := url.ParseQuery(string(c.Body())); err == nil {
			q = form.Get("lang")
		}
	}
	return r.i18n.For(i18n.Negotiate(q, stored, c.Get(fiber.HeaderAcceptLanguage), i18n.Supported))
}

func newPage(l *i18n.Localizer, title string) *page {
	return &page{L: l, Title: title, Langs: langs, Form: url.Values{}, Errors: map[string]string{}, Zones: i18n.Zones()}
}

func (r *registrar) when(l *i18n.Localizer, ev *Event) string {
	loc := i18n.ZoneOrUTC(ev.Timezone)
	return l.DateTime(ev.StartsAt, loc) + " – " + l.DateTime(ev.EndsAt, loc)
}

func render(c *fiber.Ctx, status int, name string, p *page) error {
	c.Type("html", "utf-8")
	c.Status(status)
	return pageTemplates.ExecuteTemplate(c, name, p)
}

// setErrors turns validation errors into localized messages beside their
// fields and in the summary, in the order the fields were reported.
func setErrors(p *page, err error) error {
	prob, ok := web.AsProblem(err)
	if !ok || len(prob.Errors) == 0 {
		return err
	}
	for _, f := range prob.Errors {
		msg := fieldMessage(p.L, f.Field, f.Message)
		if _, dup := p.Errors[f.Field]; dup {
			continue
		}
		p.Errors[f.Field] = msg
		id, label := f.Field, f.Field
		switch f.Field {
		case "name", "email", "timezone", "consent":
			label = p.L.T("form." + f.Field)
		case "mode":
			label = p.L.T("form.mode")
		case "locale":
			label = p.L.T("form.locale")
		case "confirm-cancel":
			label = p.L.T("manage.cancel_heading")
		case "confirm-erase":
			label = p.L.T("manage.erase_heading")
		}
		if q, ok := strings.CutPrefix(f.Field, "answers."); ok {
			id = "q-" + q
			if p.Event != nil {
				for _, question := range p.Event.Questions {
					if question.ID == q {
						label = question.Label
					}
				}
			}
		}
		p.ErrorList = append(p.ErrorList, fieldError{ID: id, Label: label, Message: msg})
	}
	return nil
}

// fieldMessage localizes a validation message (written in English for the
// JSON API) by what it says about which field.
func fieldMessage(l *i18n.Localizer, field, msg string) string {
	var limit int
	switch {
	case strings.HasPrefix(msg, "required"):
		return l.T("err.required")
	case field == "email":
		return l.T("err.email")
	case field == "mode":
		return l.T("err.mode")
	case field == "timezone":
		return l.T("err.timezone")
	case field == "consent":
		return l.T("err.consent")
	case field == "locale":
		return l.T("err.locale")
	case strings.HasPrefix(field, "confirm"):
		return l.T("manage.confirm_required")
	case strings.HasPrefix(msg, "at most"):
		if _, err := fmt.Sscanf(msg, "at most %d characters", &limit); err == nil {
			return l.T("err.too_long", map[string]any{"Max": limit})
		}
	case strings.HasPrefix(msg, "must be a single line"):
		return l.T("err.single_line")
	case strings.HasPrefix(msg, "must be checked"):
		return l.T("err.checked")
	case strings.Contains(msg, "not one of the options"):
		return l.T("err.option")
	case strings.Contains(msg, "country code"):
		return l.T("err.country")
	}
	return l.T("err.invalid")
}

// pageProblem shows a problem as a page rather than JSON; a link that does
// not open anything gets the same words in every case.
func (r *registrar) pageProblem(c *fiber.Ctx, l *i18n.Localizer, err error) error {
	var p *web.Error
	if !errors.As(err, &p) {
		return err
	}
	pg := newPage(l, p.Title)
	pg.Detail = p.Detail
	if p.Status == http.StatusNotFound {
		pg.Title, pg.Detail = l.T("page.not_found"), l.T("page.invalid_link")
	}
	return render(c, p.Status, "message", pg)
}
