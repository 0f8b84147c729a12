package registration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/plenaryhq/plenary/pkg/web"
)

// handleUpdateEvent is PATCH /admin/events/{id}: a JSON merge patch (RFC
// 7396) of the event's fields, decided by the decider against the version
// it was made from. Everyone who needs to know hears of it through
// registration.v1.event.updated.
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
	if next.Slug != cur.Slug {
		if other, err := r.store.eventBySlug(c.UserContext(), next.Slug); err == nil && other.ID != cur.ID {
			return web.Conflict("slug_taken", fmt.Sprintf("an event with slug %q already exists; choose another slug", next.Slug))
		}
	}
	key, err := web.IdempotencyKey(c)
	if err != nil {
		return err
	}
	// The edit is decided in order with registrations: a capacity raised
	// now promotes the next in line at once, a cut confirms nobody new.
	rep, err := r.ask(c.UserContext(), &request{Kind: kindEventUpdate, EventID: cur.ID, Event: next, From: cur.Version}, key)
	if err != nil {
		return accepted(c, err)
	}
	if err := replyProblem(rep); err != nil {
		return err
	}
	return c.JSON(rep.Event)
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
