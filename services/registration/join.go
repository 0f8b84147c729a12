package registration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/store"
)

// attendance is one use of a join link: who joined, when.
type attendance struct {
	ID             string    `bson:"_id" json:"id"`
	EventID        string    `bson:"event_id" json:"event_id"`
	RegistrationID string    `bson:"registration_id" json:"registration_id"`
	At             time.Time `bson:"at" json:"at"`
}

const kindAttendanceJoin = "attendance.join"

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
		return r.pageProblem(c, err)
	}
	message := func(status int, title, detail string) error {
		return render(c, status, "message", map[string]any{"Title": title, "Detail": detail})
	}
	loc, err := time.LoadLocation(ev.Timezone)
	if err != nil {
		loc = time.UTC
	}
	now := time.Now()
	opens, closes := joinWindow(ev)
	switch {
	case reg.Mode != events.ModeOnline:
		return message(http.StatusForbidden, "This link is for online attendance",
			"You are registered to attend "+ev.Title+" in person.")
	case reg.Status != events.StatusConfirmed:
		return message(http.StatusForbidden, "Your registration is not confirmed",
			fmt.Sprintf("Your registration for %s is %s; the meeting link works once it is confirmed.", ev.Title, reg.Status))
	case ev.Online.JoinURL == "":
		return message(http.StatusServiceUnavailable, "The meeting is not set up yet",
			"The organisers have not published the meeting yet. Please try again closer to the start.")
	case now.Before(opens):
		return message(http.StatusForbidden, "The meeting is not open yet",
			"The meeting opens on "+opens.In(loc).Format("Monday 2 January 2006 at 15:04 MST")+". Come back then with this same link.")
	case !now.Before(closes):
		return message(http.StatusGone, "This event has ended",
			ev.Title+" ended on "+closes.In(loc).Format("Monday 2 January 2006 at 15:04 MST")+".")
	}
	if err := r.recordJoin(c.UserContext(), ev, reg, now); errors.Is(err, store.ErrDeferred) {
		r.log.Info("join recorded; the relay will finish it", "registration_id", reg.ID)
	} else if err != nil {
		// The participant is let in anyway: a lost attendance record must
		// not keep anyone out of the meeting.
		r.log.Warn("join not recorded", "registration_id", reg.ID, "err", err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Redirect(ev.Online.JoinURL, http.StatusFound)
}

// recordJoin stores and announces one join.
func (r *registrar) recordJoin(ctx context.Context, ev *Event, reg *Registration, at time.Time) error {
	env, err := events.New(source, events.AttendanceJoined, reg.ID, events.Attendance{
		RegistrationID: reg.ID, EventID: ev.ID, At: at.UTC(),
	})
	if err != nil {
		return err
	}
	env = env.Traced(ctx)
	entry, err := store.NewEntry(kindAttendanceJoin, env,
		attendance{ID: env.ID, EventID: ev.ID, RegistrationID: reg.ID, At: at.UTC()})
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
