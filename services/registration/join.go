package registration

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/store"
)

// attendance is one use of a join link: who joined what, when.
type attendance struct {
	ID             string `bson:"_id" json:"id"`
	EventID        string `bson:"event_id" json:"event_id"`
	RegistrationID string `bson:"registration_id" json:"registration_id"`
	// SessionID is the agenda session joined; empty for the whole event.
	SessionID string    `bson:"session_id,omitempty" json:"session_id,omitempty"`
	At        time.Time `bson:"at" json:"at"`
}

// joinWindow is when the meeting may be joined: from opens_minutes_before
// the start until the end.
func joinWindow(ev *Event) (opens, closes time.Time) {
	return ev.StartsAt.Add(-time.Duration(ev.Online.OpensMinutesBefore) * time.Minute), ev.EndsAt
}

// pageJoin sends a confirmed online attendee to the meeting while it is open
// to join, and records the join. Anyone else gets a page that says why not.
func (r *registrar) pageJoin(c *fiber.Ctx) error {
	reg, ev, err := r.byToken(c.UserContext(), links.Join, c.Params("token"))
	if err != nil {
		return r.pageProblem(c, r.localizer(c, ""), err)
	}
	l := r.localizer(c, reg.Locale)
	if id := c.Query("session"); id != "" {
		return r.pageJoinSession(c, l, reg, ev, id)
	}
	message := func(status int, title string, detail string) error {
		p := newPage(l, l.T(title))
		p.Detail = detail
		return render(c, status, "message", p)
	}
	loc := i18n.ZoneOrUTC(ev.Timezone)
	now := time.Now()
	opens, closes := joinWindow(ev)
	data := map[string]any{"Event": ev.Title, "Opens": l.DateTime(opens, loc), "Ends": l.DateTime(closes, loc)}
	switch {
	case reg.Mode != events.ModeOnline:
		return message(http.StatusForbidden, "join.not_online_title", l.T("join.not_online_body", data))
	case reg.Status != events.StatusConfirmed:
		return message(http.StatusForbidden, "join.not_confirmed_title", l.T("join.not_confirmed_body", data))
	case ev.Online.JoinURL == "":
		return message(http.StatusServiceUnavailable, "join.not_set_up_title", l.T("join.not_set_up_body", data))
	case now.Before(opens):
		return message(http.StatusForbidden, "join.not_open_title", l.T("join.not_open_body", data))
	case !now.Before(closes):
		return message(http.StatusGone, "join.ended_title", l.T("join.ended_body", data))
	}
	r.noteJoin(c, ev, reg, "", now)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Redirect(ev.Online.JoinURL, http.StatusFound)
}

// noteJoin records a join (of the whole event when sessionID is empty).
func (r *registrar) noteJoin(c *fiber.Ctx, ev *Event, reg *Registration, sessionID string, at time.Time) {
	if err := r.recordJoin(c.UserContext(), ev, reg, sessionID, at); errors.Is(err, store.ErrDeferred) {
		r.log.Info("join recorded; the relay will finish it", "registration_id", reg.ID, "session_id", sessionID)
	} else if err != nil {
		// The participant is let in anyway: a lost attendance record must
		// not keep anyone out of the meeting.
		r.log.Warn("join not recorded", "registration_id", reg.ID, "session_id", sessionID, "err", err)
	}
}

// recordJoin stores and announces one join.
func (r *registrar) recordJoin(ctx context.Context, ev *Event, reg *Registration, sessionID string, at time.Time) error {
	env, err := events.New(source, events.AttendanceJoined, reg.ID, events.Attendance{
		RegistrationID: reg.ID, EventID: ev.ID, SessionID: sessionID, At: at.UTC(),
	})
	if err != nil {
		return err
	}
	env = env.Traced(ctx)
	entry, err := store.NewEntry(kindAttendanceJoin, env,
		attendance{ID: env.ID, EventID: ev.ID, RegistrationID: reg.ID, SessionID: sessionID, At: at.UTC()})
	if err != nil {
		return err
	}
	return r.outbox.Write(ctx, entry)
}

// applyAttendanceJoin inserts the attendance record; a replay finds it there.
func (r *registrar) applyAttendanceJoin(ctx context.Context, e *store.Entry) error {
	var a attendance
	if err := decodeState(e, &a); err != nil {
		return store.Discard(err)
	}
	_, err := r.store.attendance.InsertOne(ctx, &a)
	if err = store.Translate(err); errors.Is(err, store.ErrDuplicate) {
		return nil
	}
	return err
}
