package registration

import (
	"html/template"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/web"
)

var managePage = template.Must(template.New("manage").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Your registration · {{.Event.Title}}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem">
<h1>{{.Event.Title}}</h1>
<p>{{.When}}</p>
<h2>Your registration</h2>
<dl>
<dt>Name</dt><dd>{{.Reg.Name}}</dd>
<dt>Email</dt><dd>{{.Reg.Email}}</dd>
<dt>Attending</dt><dd>{{if eq .Reg.Mode "online"}}online{{else}}in person{{end}}</dd>
<dt>Status</dt><dd>{{.Reg.Status}}</dd>
</dl>
</body></html>`))

// pageManage is the manage page a participant's link opens.
func (r *registrar) pageManage(c *fiber.Ctx) error {
	reg, ev, err := r.byManageToken(c.UserContext(), c.Params("token"))
	if err != nil {
		if p, ok := web.AsProblem(err); ok {
			return c.Status(p.Status).Type("html").SendString("<!doctype html><title>Link not valid</title><p>" + template.HTMLEscapeString(p.Detail) + "</p>")
		}
		return err
	}
	loc, _ := time.LoadLocation(ev.Timezone)
	when := ev.StartsAt.In(loc).Format("Monday 2 January 2006, 15:04") + " – " + ev.EndsAt.In(loc).Format("Monday 2 January 2006, 15:04 MST")
	c.Type("html", "utf-8")
	return managePage.Execute(c, map[string]any{"Event": ev, "Reg": reg, "When": when})
}
