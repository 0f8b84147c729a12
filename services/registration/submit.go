package registration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/web"
)

// submit appends req to the requests stream and returns once NATS has
// stored it. With an Idempotency-Key (already scoped to path and body) the
// message id is derived from it, so a retry within RequestWindow — on any
// replica — is dropped by NATS as a duplicate; such a request is published
// on its own, because NATS deduplicates whole messages. Without a key the
// request joins the group commit: it is stored with whatever other requests
// arrived while the group before was being stored, in one message.
func (r *registrar) submit(ctx context.Context, req *request, idempotencyKey string) error {
	req.At = time.Now().UTC()
	req.TraceParent = events.TraceFrom(ctx)
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if idempotencyKey != "" {
		sum := sha256.Sum256([]byte("request\x00" + idempotencyKey))
		err = r.bus.Publish(ctx, events.RequestSubject(req.EventID, req.Kind), hex.EncodeToString(sum[:16]), body)
	} else {
		err = r.committer.Publish(ctx, body)
	}
	if err != nil {
		r.log.Warn("request not stored", "kind", req.Kind, "event_id", req.EventID, "err", err)
		return web.Problem(503, "unavailable", "we could not take your request just now; please try again in a moment")
	}
	return nil
}

// errNoAnswer means the decider did not answer within ActionWait: the
// request is stored and will be decided; the caller answers 202.
var errNoAnswer = errors.New("no outcome yet")

// ask submits req and waits up to ActionWait for the decider's outcome.
func (r *registrar) ask(ctx context.Context, req *request, idempotencyKey string) (*reply, error) {
	inbox := r.bus.NC.NewInbox()
	sub, err := r.bus.NC.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("ask: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	req.Reply = inbox
	if req.ID == "" {
		req.ID = events.NewID()
	}
	if err := r.submit(ctx, req, idempotencyKey); err != nil {
		return nil, err
	}
	msg, err := sub.NextMsg(r.cfg.ActionWait)
	if err != nil {
		return nil, errNoAnswer
	}
	var rep reply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return nil, fmt.Errorf("ask: reply: %w", err)
	}
	return &rep, nil
}

// replyProblem turns a decider's refusal into the problem a user sees.
func replyProblem(rep *reply) error {
	switch rep.Status {
	case replyOK:
		return nil
	case "not_found", "link_invalid":
		return web.NotFound("this link is not valid (any more); use the newest email we sent you, or ask for a new link")
	case "invalid":
		return web.BadRequest(rep.Detail)
	}
	return web.Conflict(rep.Status, rep.Detail)
}
