package registration

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/web"
)

// Pages are server-rendered and work without JavaScript.

var pageTemplates = template.Must(template.New("layout").Parse(`{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1c1917}
label{display:block;margin-top:1rem;font-weight:600}input[type=text],input[type=email],select,textarea{width:100%;padding:.4rem;font:inherit}
.check label,.choice{font-weight:400;display:block;margin-top:.25rem}.error{color:#b91c1c}.muted{color:#57534e}
button{margin-top:1.5rem;padding:.6rem 1.2rem;font:inherit}</style></head><body>{{end}}

{{define "event"}}{{template "head" .Event.Title}}
<h1>{{.Event.Title}}</h1>
<p class="muted">{{.When}}{{if .Event.Venue.Name}} · {{.Event.Venue.Name}}{{end}} · in person and online</p>
{{if .Event.Description}}<p>{{.Event.Description}}</p>{{end}}
{{if .Done}}<h2>Thank you</h2><p>We have received your registration. You will get an email in a moment saying whether you are confirmed, on the waiting list or awaiting approval, with your personal link to change or cancel it.</p>
{{else if .Closed}}<p class="error">{{.Closed}}</p>
{{else}}<h2>Register</h2>
{{if .Errors}}<p class="error" role="alert">Please correct the fields marked below.</p>{{end}}
<form method="post" action="/e/{{.Event.Slug}}">
<label for="name">Full name</label>{{with index .Errors "name"}}<span class="error">{{.}}</span>{{end}}
<input type="text" id="name" name="name" maxlength="200" required value="{{.Form.Get "name"}}">
<label for="email">Email</label>{{with index .Errors "email"}}<span class="error">{{.}}</span>{{end}}
<input type="email" id="email" name="email" maxlength="254" required value="{{.Form.Get "email"}}">
<label>How will you attend?</label>{{with index .Errors "mode"}}<span class="error">{{.}}</span>{{end}}
<span class="choice"><input type="radio" name="mode" value="in_person" id="m-ip" {{if eq (.Form.Get "mode") "in_person"}}checked{{end}}> <label class="choice" for="m-ip" style="display:inline">In person{{if .Event.Venue.Name}} at {{.Event.Venue.Name}}{{end}}{{if not .Seats.in_person}} (full{{if .Event.Registration.Waitlist}}: waiting list{{end}}){{end}}</label></span>
<span class="choice"><input type="radio" name="mode" value="online" id="m-on" {{if eq (.Form.Get "mode") "online"}}checked{{end}}> <label class="choice" for="m-on" style="display:inline">Online{{if not .Seats.online}} (full{{if .Event.Registration.Waitlist}}: waiting list{{end}}){{end}}</label></span>
<label for="timezone">Your time zone <span class="muted">(optional, e.g. Asia/Tokyo; for online attendees)</span></label>{{with index .Errors "timezone"}}<span class="error">{{.}}</span>{{end}}
<input type="text" id="timezone" name="timezone" maxlength="64" value="{{.Form.Get "timezone"}}">
{{range .Event.Questions}}{{$id := .ID}}
<label for="q-{{.ID}}">{{.Label}}{{if not .Required}} <span class="muted">(optional)</span>{{end}}</label>{{with index $.Errors (print "answers." .ID)}}<span class="error">{{.}}</span>{{end}}
{{if eq .Type "textarea"}}<textarea id="q-{{.ID}}" name="answers.{{.ID}}" maxlength="2000">{{$.Form.Get (print "answers." .ID)}}</textarea>
{{else if eq .Type "select"}}<select id="q-{{.ID}}" name="answers.{{.ID}}"><option value="">—</option>{{range .Options}}<option {{if eq . ($.Form.Get (print "answers." $id))}}selected{{end}}>{{.}}</option>{{end}}</select>
{{else if eq .Type "multiselect"}}{{range .Options}}<span class="choice"><input type="checkbox" name="answers.{{$id}}" value="{{.}}"> {{.}}</span>{{end}}
{{else if eq .Type "checkbox"}}<span class="choice"><input type="checkbox" id="q-{{.ID}}" name="answers.{{.ID}}" value="true"> yes</span>
{{else}}<input type="text" id="q-{{.ID}}" name="answers.{{.ID}}" maxlength="500" value="{{$.Form.Get (print "answers." .ID)}}"{{if eq .Type "country"}} placeholder="two-letter code, e.g. AT"{{end}}>{{end}}
{{end}}
{{if .Event.Registration.Waitlist}}<span class="choice" style="margin-top:1rem"><input type="checkbox" name="waitlist_ok" value="true" id="wl" checked> <label class="choice" for="wl" style="display:inline">Put me on the waiting list if my choice is full</label></span>{{end}}
<span class="choice"><input type="checkbox" name="consent" value="true" id="consent"> <label class="choice" for="consent" style="display:inline">I agree that the organisers store my registration to run this event and delete it {{.Event.RetentionDays}} days after it.</label></span>{{with index .Errors "consent"}}<span class="error">{{.}}</span>{{end}}
<button type="submit">Register</button>
</form>{{end}}
</body></html>{{end}}

{{define "manage"}}{{template "head" .Event.Title}}
<h1>{{.Event.Title}}</h1>
<p>{{.When}}</p>
<h2>Your registration</h2>
<dl>
<dt>Name</dt><dd>{{.Reg.Name}}</dd>
<dt>Email</dt><dd>{{.Reg.Email}}</dd>
<dt>Attending</dt><dd>{{if eq .Reg.Mode "online"}}online{{else}}in person{{end}}</dd>
<dt>Status</dt><dd>{{.Reg.Status}}</dd>
</dl>
</body></html>{{end}}

{{define "message"}}{{template "head" .Title}}<h1>{{.Title}}</h1><p>{{.Detail}}</p></body></html>{{end}}`))

func whenText(ev *Event) string {
	loc, err := time.LoadLocation(ev.Timezone)
	if err != nil {
		loc = time.UTC
	}
	return ev.StartsAt.In(loc).Format("Monday 2 January 2006, 15:04") + " – " +
		ev.EndsAt.In(loc).Format("Monday 2 January 2006, 15:04 MST")
}

func render(c *fiber.Ctx, status int, name string, data any) error {
	c.Type("html", "utf-8")
	c.Status(status)
	return pageTemplates.ExecuteTemplate(c, name, data)
}

// pageEvent shows an event and its registration form.
func (r *registrar) pageEvent(c *fiber.Ctx) error {
	ev, err := r.eventBySlug(c)
	if err != nil {
		return r.pageProblem(c, err)
	}
	return r.renderEventPage(c, ev, http.StatusOK, url.Values{}, nil, c.Query("registered") == "1")
}

func (r *registrar) renderEventPage(c *fiber.Ctx, ev *Event, status int, form url.Values, errs map[string]string, done bool) error {
	seats, err := r.store.seatsAvailable(c.UserContext(), ev)
	if err != nil {
		return err
	}
	closed := ""
	if err := openForRegistration(ev, time.Now()); err != nil {
		if p, ok := web.AsProblem(err); ok {
			closed = p.Detail
		}
	}
	return render(c, status, "event", map[string]any{
		"Event": ev, "When": whenText(ev), "Form": form, "Errors": errs, "Done": done,
		"Closed": closed, "Seats": seats,
	})
}

// pageRegister takes the form. Success redirects (303) to the event page
// with a thank-you, so a reload does not post twice; invalid input shows the
// form again with the values kept and the errors beside their fields.
func (r *registrar) pageRegister(c *fiber.Ctx) error {
	ev, err := r.eventBySlug(c)
	if err != nil {
		return r.pageProblem(c, err)
	}
	form, err := url.ParseQuery(string(c.Body()))
	if err != nil {
		return r.pageProblem(c, web.BadRequest("the form could not be read; please try again"))
	}
	if err := openForRegistration(ev, time.Now()); err != nil {
		return r.renderEventPage(c, ev, http.StatusConflict, form, nil, false)
	}
	reg, err := newRegistration(ev, formRequest(ev, form))
	if err != nil {
		p, ok := web.AsProblem(err)
		if !ok {
			return err
		}
		errs := map[string]string{}
		for _, f := range p.Errors {
			errs[f.Field] = f.Message
		}
		return r.renderEventPage(c, ev, http.StatusUnprocessableEntity, form, errs, false)
	}
	if err := r.register(c.UserContext(), ev, reg); err != nil {
		return err
	}
	return c.Redirect("/e/"+url.PathEscape(ev.Slug)+"?registered=1", http.StatusSeeOther)
}

// formRequest reads a registration from the form's fields; answers come as
// answers.<question id>.
func formRequest(ev *Event, form url.Values) *RegisterRequest {
	req := &RegisterRequest{
		Name: form.Get("name"), Email: form.Get("email"), Mode: form.Get("mode"),
		Locale: form.Get("locale"), Timezone: strings.TrimSpace(form.Get("timezone")),
		Consent: form.Get("consent") == "true", WaitlistOK: form.Get("waitlist_ok") == "true",
		Answers: map[string]any{},
	}
	for _, q := range ev.Questions {
		key := "answers." + q.ID
		if !form.Has(key) {
			continue
		}
		switch q.Type {
		case "multiselect":
			vals := make([]any, 0, len(form[key]))
			for _, v := range form[key] {
				vals = append(vals, v)
			}
			req.Answers[q.ID] = vals
		case "checkbox":
			req.Answers[q.ID] = form.Get(key) == "true"
		default:
			req.Answers[q.ID] = form.Get(key)
		}
	}
	return req
}

// pageManage is the manage page a participant's link opens.
func (r *registrar) pageManage(c *fiber.Ctx) error {
	reg, ev, err := r.byManageToken(c.UserContext(), c.Params("token"))
	if err != nil {
		return r.pageProblem(c, err)
	}
	return render(c, http.StatusOK, "manage", map[string]any{"Event": ev, "Reg": reg, "When": whenText(ev)})
}

// pageProblem shows a problem as a page rather than JSON.
func (r *registrar) pageProblem(c *fiber.Ctx, err error) error {
	var p *web.Error
	if !errors.As(err, &p) {
		return err
	}
	return render(c, p.Status, "message", map[string]any{"Title": p.Title, "Detail": p.Detail})
}
