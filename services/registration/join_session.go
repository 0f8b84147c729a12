package registration

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// sessionWindow is when a session may be joined: from the event's
// opens_minutes_before the session's start until its end.
func sessionWindow(ev *Event, s *joinSession) (opens, closes time.Time) {
	return s.StartsAt.Add(-time.Duration(ev.Online.OpensMinutesBefore) * time.Minute), s.EndsAt
}

// pageJoinSession is GET /j/{token}?session={id}: it sends a confirmed
// online attendee to one session's meeting (the session's own, else the
// event's) while that session is open to join, as the newest agenda release
// the service knows describes it, and records the join with the session.
func (r *registrar) pageJoinSession(c *fiber.Ctx, l *i18n.Localizer, reg *Registration, ev *Event, sessionID string) error {
	// Session ids are lowercase ULIDs; a ULID read aloud or retyped in
	// capitals is the same id.
	sessionID = strings.ToLower(sessionID)
	message := func(status int, title string, detail string) error {
		p := newPage(l, l.T(title))
		p.Detail = detail
		if validSessionID(sessionID) {
			p.Session = sessionID // the language links keep it
		}
		return render(c, status, "message", p)
	}
	loc := i18n.ZoneOrUTC(ev.Timezone)
	data := map[string]any{"Event": ev.Title}
	switch {
	case reg.Mode != events.ModeOnline:
		return message(http.StatusForbidden, "join.not_online_title", l.T("join.not_online_body", data))
	case reg.Status != events.StatusConfirmed:
		return message(http.StatusForbidden, "join.not_confirmed_title", l.T("join.not_confirmed_body", data))
	case !validSessionID(sessionID):
		return message(http.StatusNotFound, "join_session.unknown_title", l.T("join_session.unknown_body", data))
	}
	s, err := r.agendas.session(c.UserContext(), ev.ID, sessionID)
	if errors.Is(err, store.ErrNotFound) {
		return message(http.StatusNotFound, "join_session.unknown_title", l.T("join_session.unknown_body", data))
	}
	if err != nil {
		return err
	}
	meeting := s.JoinURL
	if meeting == "" {
		meeting = ev.Online.JoinURL
	}
	now := time.Now()
	opens, closes := sessionWindow(ev, s)
	data["Session"] = s.Title
	data["Opens"], data["Ends"] = l.DateTime(opens, loc), l.DateTime(closes, loc)
	switch {
	case s.Cancelled:
		return message(http.StatusGone, "join_session.cancelled_title", l.T("join_session.cancelled_body", data))
	case s.Format != events.FormatOnline && s.Format != events.FormatHybrid:
		return message(http.StatusForbidden, "join_session.in_person_title", l.T("join_session.in_person_body", data))
	case meeting == "" || !web.ValidURL(meeting):
		return message(http.StatusServiceUnavailable, "join.not_set_up_title", l.T("join.not_set_up_body", data))
	case now.Before(opens):
		return message(http.StatusForbidden, "join_session.not_open_title", l.T("join_session.not_open_body", data))
	case !now.Before(closes):
		return message(http.StatusGone, "join_session.ended_title", l.T("join_session.ended_body", data))
	}
	r.noteJoin(c, ev, reg, s.ID, now)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Redirect(meeting, http.StatusFound)
}
