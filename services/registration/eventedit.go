package registration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

const kindEventUpdate = "event.update"

var errEventChanged = errors.New("the event changed meanwhile")

// eventUpdate is the outbox state of an edit: the new version and the
// version it was made from.
type eventUpdate struct {
	Event Event `bson:"event"`
	From  int64 `bson:"from"`
}

// handleUpdateEvent is PATCH /admin/events/{id}: a JSON merge patch (RFC
// 7396) of the event's fields. Everyone who needs to know hears of it
// through registration.v1.event.updated.
func (r *registrar) handleUpdateEvent(c *fiber.Ctx) error {
	cur, err := r.eventByID(c)
	if err != nil {
		return err
	}
	var patch map[string]any
	if err := decodeJSON(c, &patch); err != nil {
		return err
	}
	next, err := mergeEvent(cur, patch)
	if err != nil {
		return err
	}
	if err := validateEvent(next); err != nil {
		return err
	}
	if err := r.updateEvent(c.UserContext(), cur, next); err != nil {
		return err
	}
	return c.JSON(next)
}

// mergeEvent applies a merge patch to a copy of cur. The id, version and
// dates are the service's, not the patch's.
func mergeEvent(cur *Event, patch map[string]any) (*Event, error) {
	raw, err := json.Marshal(cur)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	for _, k := range []string{"id", "version", "created_at", "updated_at"} {
		delete(patch, k)
	}
	merged, err := json.Marshal(mergePatch(doc, patch))
	if err != nil {
		return nil, err
	}
	next := &Event{}
	if err := json.Unmarshal(merged, next); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			p := web.Problem(http.StatusUnprocessableEntity, "validation", "invalid fields: "+te.Field)
			p.Errors = []web.FieldError{{Field: te.Field, Message: "must be a " + te.Type.String()}}
			return nil, p
		}
		return nil, web.BadRequest("the patch does not make a valid event: " + err.Error())
	}
	next.ID, next.Version, next.CreatedAt = cur.ID, cur.Version, cur.CreatedAt
	return next, nil
}

// mergePatch is RFC 7396: objects merge recursively, null removes a member,
// anything else replaces it.
func mergePatch(target map[string]any, patch map[string]any) map[string]any {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(target, k)
		case map[string]any:
			sub, _ := target[k].(map[string]any)
			if sub == nil {
				sub = map[string]any{}
			}
			target[k] = mergePatch(sub, pv)
		default:
			target[k] = v
		}
	}
	return target
}

// updateEvent stores next as the version after cur and announces it.
func (r *registrar) updateEvent(ctx context.Context, cur, next *Event) error {
	next.Version = cur.Version + 1
	next.UpdatedAt = time.Now().UTC()
	env, err := events.New(source, events.EventUpdated, next.ID, next.payload(r.public))
	if err != nil {
		return err
	}
	next.Revision = env.ID
	entry, err := store.NewEntry(kindEventUpdate, env.Traced(ctx), eventUpdate{Event: *next, From: cur.Version})
	if err != nil {
		return err
	}
	switch err := r.outbox.Write(ctx, entry); {
	case errors.Is(err, errSlugTaken):
		return web.Conflict("slug_taken", fmt.Sprintf("an event with slug %q already exists; choose another slug", next.Slug))
	case errors.Is(err, errEventChanged):
		return web.Conflict("event_changed", "someone else changed this event meanwhile; load it again and repeat your change")
	default:
		return err
	}
}

// applyEventUpdate replaces the event if it is still at the version the
// change was made from. On FerretDB two concurrent edits can both pass that
// check (an update reads and writes in separate steps); organizers' edits
// are rare and the later one wins, which the announcement then reflects.
func (r *registrar) applyEventUpdate(ctx context.Context, e *store.Entry) error {
	var u eventUpdate
	if err := decodeState(e, &u); err != nil {
		return store.Discard(err)
	}
	res, err := r.store.events.ReplaceOne(ctx,
		bson.D{{Key: "_id", Value: u.Event.ID}, {Key: "version", Value: u.From}}, &u.Event)
	if err = store.Translate(err); errors.Is(err, store.ErrDuplicate) {
		return store.Discard(errSlugTaken)
	}
	if err != nil {
		return err
	}
	if res.MatchedCount == 1 {
		return nil
	}
	cur, err := r.store.eventByID(ctx, u.Event.ID)
	if err != nil {
		return err
	}
	if cur.Revision == u.Event.Revision {
		return nil // this change, replayed
	}
	return store.Discard(errEventChanged)
}
