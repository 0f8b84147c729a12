package registration

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/web"
)

// pageEvent shows an event and its registration form.
func (r *registrar) pageEvent(c *fiber.Ctx) error {
	l := r.localizer(c, "")
	ev, err := r.cachedEvent(c)
	if err != nil {
		return r.pageProblem(c, l, err)
	}
	return r.renderEventPage(c, l, ev, http.StatusOK, url.Values{}, nil, c.Query("registered") == "1")
}

func (r *registrar) renderEventPage(c *fiber.Ctx, l *i18n.Localizer, ev *Event, status int, form url.Values, verr error, done bool) error {
	seats, err := r.cache.seats(c.UserContext(), ev)
	if err != nil {
		return err
	}
	p := newPage(l, ev.Title)
	p.Event, p.When, p.Form, p.Done, p.Seats = ev, r.when(l, ev), form, done, seats
	p.Zone, p.Locale = form.Get("timezone"), form.Get("locale")
	if p.Locale == "" {
		p.Locale = l.Lang()
	}
	if verr != nil {
		if err := setErrors(p, verr); err != nil {
			return err
		}
	}
	if err := openForRegistration(ev, time.Now()); err != nil {
		p.Closed = closedText(l, ev, time.Now())
	}
	return render(c, status, "event", p)
}

// closedText says, in the page's language, why registration is closed.
func closedText(l *i18n.Localizer, ev *Event, now time.Time) string {
	loc := i18n.ZoneOrUTC(ev.Timezone)
	if o := ev.Registration.OpensAt; o != nil && now.Before(*o) {
		return l.T("form.not_open", map[string]any{"Date": l.DateTime(*o, loc)})
	}
	at := ev.EndsAt
	if c := ev.Registration.ClosesAt; c != nil && c.Before(at) {
		at = *c
	}
	return l.T("form.closed", map[string]any{"Date": l.DateTime(at, loc)})
}

// pageRegister takes the form. Success redirects (303) to the event page
// with a thank-you, so a reload does not post twice; invalid input shows the
// form again with the values kept and the errors beside their fields.
func (r *registrar) pageRegister(c *fiber.Ctx) error {
	l := r.localizer(c, "")
	ev, err := r.cachedEvent(c)
	if err != nil {
		return r.pageProblem(c, l, err)
	}
	if !strings.HasPrefix(c.Get(fiber.HeaderContentType), fiber.MIMEApplicationForm) {
		return r.pageProblem(c, l, web.Problem(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"send the form as application/x-www-form-urlencoded"))
	}
	form, err := url.ParseQuery(string(c.Body()))
	if err != nil {
		return r.pageProblem(c, l, web.BadRequest("the form could not be read; please try again"))
	}
	if err := openForRegistration(ev, time.Now()); err != nil {
		return r.renderEventPage(c, l, ev, http.StatusConflict, form, nil, false)
	}
	n, err := newRegistration(ev, formRequest(ev, form))
	if err != nil {
		return r.renderEventPage(c, l, ev, http.StatusUnprocessableEntity, form, err, false)
	}
	key, err := web.IdempotencyKey(c)
	if err != nil {
		return err
	}
	if err := r.register(c.UserContext(), ev, n, key); err != nil {
		return r.pageProblem(c, l, err)
	}
	return c.Redirect("/e/"+url.PathEscape(ev.Slug)+"?registered=1&lang="+l.Lang(), http.StatusSeeOther)
}

// formRequest reads a registration from the form's fields; answers come as
// answers.<question id>.
func formRequest(ev *Event, form url.Values) *RegisterRequest {
	req := &RegisterRequest{
		Name: form.Get("name"), Email: form.Get("email"), Mode: form.Get("mode"),
		Locale: form.Get("locale"), Timezone: strings.TrimSpace(form.Get("timezone")),
		Consent: form.Get("consent") == "true", WaitlistOK: form.Get("waitlist_ok") == "true",
		Answers: formAnswers(ev, form),
	}
	return req
}

func formAnswers(ev *Event, form url.Values) map[string]any {
	answers := map[string]any{}
	for _, q := range ev.Questions {
		key := "answers." + q.ID
		switch q.Type {
		case "multiselect":
			vals := make([]any, 0, len(form[key]))
			for _, v := range form[key] {
				vals = append(vals, v)
			}
			answers[q.ID] = vals
		case "checkbox":
			answers[q.ID] = form.Get(key) == "true"
		default:
			if form.Has(key) {
				answers[q.ID] = form.Get(key)
			}
		}
	}
	return answers
}

// pageManage is the manage page a participant's link opens.
func (r *registrar) pageManage(c *fiber.Ctx) error {
	reg, ev, err := r.byManageToken(c.UserContext(), c.Params("token"))
	if err != nil {
		return r.pageProblem(c, r.localizer(c, ""), err)
	}
	l := r.localizer(c, reg.Locale)
	flash := ""
	switch c.Query("done") {
	case "saved", "cancelled", "link_sent", "erased", "received":
		flash = l.T("manage." + c.Query("done"))
	}
	return r.renderManage(c, l, reg, ev, http.StatusOK, nil, nil, flash)
}

func (r *registrar) renderManage(c *fiber.Ctx, l *i18n.Localizer, reg *Registration, ev *Event, status int, form url.Values, verr error, flash string) error {
	v, err := r.view(c.UserContext(), reg, ev)
	if err != nil {
		return err
	}
	p := newPage(l, ev.Title)
	p.Event, p.When, p.View, p.Token, p.Flash = ev, r.when(l, ev), v, c.Params("token"), flash
	p.Live = reg.live()
	p.Status = statusText(l, v)
	loc := i18n.ZoneOrUTC(ev.Timezone)
	opens, _ := joinWindow(ev)
	p.Opens = l.DateTime(opens, loc)
	if reg.CheckedInAt != nil {
		p.CheckedIn = l.T("manage.checked_in", map[string]any{"Time": l.DateTime(*reg.CheckedInAt, loc)})
	}
	if form == nil {
		form = url.Values{"name": {reg.Name}, "timezone": {reg.Timezone}, "locale": {reg.Locale}}
		for id, a := range reg.Answers {
			form["answers."+id] = answerValues(a)
		}
	}
	p.Form, p.Zone, p.Locale = form, form.Get("timezone"), form.Get("locale")
	if verr != nil {
		if err := setErrors(p, verr); err != nil {
			return err
		}
	}
	return render(c, status, "manage", p)
}

func statusText(l *i18n.Localizer, v *manageView) string {
	if v.Status == events.StatusWaitlisted {
		return l.T("status.waitlisted", map[string]any{"Position": v.Position})
	}
	return l.T("status." + v.Status)
}

func answerValues(a any) []string {
	switch v := a.(type) {
	case bool:
		if v {
			return []string{"true"}
		}
		return nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			out = append(out, answerText(x))
		}
		return out
	case bson.A: // a multiselect, as read back from the database
		return answerValues([]any(v))
	}
	return []string{answerText(a)}
}

// pageManageAction takes the manage page's forms (action=save, switch,
// cancel, resend, erase) and redirects (303) to the page with a notice.
func (r *registrar) pageManageAction(c *fiber.Ctx) error {
	reg, ev, err := r.byManageToken(c.UserContext(), c.Params("token"))
	if err != nil {
		return r.pageProblem(c, r.localizer(c, ""), err)
	}
	l := r.localizer(c, reg.Locale)
	form, err := url.ParseQuery(string(c.Body()))
	if err != nil {
		return r.pageProblem(c, l, web.BadRequest("the form could not be read; please try again"))
	}
	invalid := func(verr error) error {
		shown := form // what was typed into the details form stays
		if form.Get("action") != "save" {
			shown = nil // the details form shows what is saved
		}
		return r.renderManage(c, l, reg, ev, http.StatusUnprocessableEntity, shown, verr, "")
	}
	var req *request
	done := ""
	switch form.Get("action") {
	case "save":
		name, tz, locale := form.Get("name"), form.Get("timezone"), form.Get("locale")
		p := managePatch{Name: &name, Timezone: &tz, Locale: &locale, Answers: formAnswers(ev, form)}
		edit, err := p.validate(ev)
		if err != nil {
			return invalid(err)
		}
		req, done = &request{Kind: kindEdit, Edit: edit}, "saved"
	case "switch":
		req, done = &request{Kind: kindSwitch, Mode: form.Get("mode")}, "saved"
	case "cancel", "erase":
		if form.Get("confirm") != "yes" {
			var v web.Validation
			v.Add("confirm-"+form.Get("action"), "must be checked")
			return invalid(v.Err())
		}
		req, done = &request{Kind: kindCancel}, "cancelled"
		if form.Get("action") == "erase" {
			req, done = &request{Kind: kindErase}, "erased"
		}
	case "resend":
		if !r.resends.allow(reg.ID) {
			return r.pageProblem(c, l, web.Problem(http.StatusTooManyRequests, "rate_limited", l.T("err.rate_limited")))
		}
		req, done = &request{Kind: kindResend}, "link_sent"
	default:
		return r.pageProblem(c, l, web.BadRequest("unknown action"))
	}
	if err := r.participantAsk(c, reg, req); errors.Is(err, errNoAnswer) {
		done = "received"
	} else if err != nil {
		return r.pageProblem(c, l, err)
	}
	return c.Redirect("/r/"+c.Params("token")+"?done="+done+"&lang="+l.Lang(), http.StatusSeeOther)
}
