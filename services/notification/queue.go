package notification

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// queue records emails in the log and puts their jobs on the MAIL stream,
// many at a time: one InsertMany claims them all (a record's _id is its job
// id, derived from what the email is for, so inserting it is the claim),
// and the jobs of the newly claimed go out as atomic batches, about one
// fsync per thousand (DESIGN §9). A record already claimed — by an earlier
// delivery, a replay, or another replica — is not sent again unless its
// first publish was lost (replay). It returns one error per record: nil
// when its job is queued or was handled before.
func (n *notifier) queue(ctx context.Context, recs []emailRecord) []error {
	errs := make([]error, len(recs))
	if len(recs) == 0 {
		return errs
	}
	dup := make([]bool, len(recs))
	docs := make([]any, len(recs))
	for i := range recs {
		docs[i] = recs[i]
	}
	_, err := n.emails.emails.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	var bulk mongo.BulkWriteException
	switch {
	case err == nil:
	case errors.As(err, &bulk) && bulk.WriteConcernError == nil:
		for _, we := range bulk.WriteErrors {
			if we.Index < 0 || we.Index >= len(recs) {
				continue
			}
			if mongo.IsDuplicateKeyError(we) {
				dup[we.Index] = true
			} else {
				errs[we.Index] = fmt.Errorf("claim email job[%s]: %s", recs[we.Index].ID, we.Message)
			}
		}
	default:
		return bus.ErrBatch(len(recs), fmt.Errorf("claim %d emails: %w", len(recs), store.Translate(err)))
	}

	var msgs []*nats.Msg
	var fresh []int
	for i, r := range recs {
		if dup[i] || errs[i] != nil {
			continue
		}
		msg, err := jobMsg(ctx, r)
		if err != nil {
			errs[i] = bus.Permanent(err)
			continue
		}
		msgs = append(msgs, msg)
		fresh = append(fresh, i)
	}
	if err := n.bus.PublishBatch(ctx, msgs); err != nil {
		// Claimed but maybe not queued: a redelivery finds the claims and
		// replays them.
		for _, i := range fresh {
			errs[i] = err
		}
	} else {
		for _, i := range fresh {
			n.jobs.WithLabelValues(recs[i].Kind, "queued").Inc()
		}
	}
	var again []int
	for i := range recs {
		if dup[i] {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		ids := make([]string, len(again))
		for j, i := range again {
			ids[j] = recs[i].ID
		}
		for j, err := range n.replay(ctx, ids) {
			errs[again[j]] = err
		}
	}
	return errs
}

// HeaderRepublished marks a mail job published again past the duplicate
// window: a new message to NATS, so the mailer looks it up in its sent
// ledger even on a first delivery.
const HeaderRepublished = "Plenary-Republished"

// jobMsg is the record's mail job, ready for PublishBatch.
func jobMsg(ctx context.Context, r emailRecord) (*nats.Msg, error) {
	env, err := events.NewWithID(r.ID, "plenary/notification", events.MailSend, r.RegistrationID, r.job())
	if err != nil {
		return nil, err
	}
	if r.TraceParent != "" {
		ctx = events.WithTrace(ctx, r.TraceParent)
	}
	return bus.EnvelopeMsg(env.Traced(ctx))
}

// replay publishes claimed emails' jobs again, all at once: one lookup of
// the records, one of their statuses, one batch publish. Within the
// stream's duplicate window NATS drops a repeat. Past it, a repeat would be
// a new job, so it is published only if the mailer never reported on it
// (the first publish was lost, or the job still waits in the queue: marked
// republished, the mailer checks its ledger before sending it).
func (n *notifier) replay(ctx context.Context, ids []string) []error {
	errs := make([]error, len(ids))
	recs, err := n.emails.getMany(ctx, ids)
	if err != nil {
		return bus.ErrBatch(len(ids), err)
	}
	var old []string
	for _, r := range recs {
		if time.Since(r.CreatedAt) > events.DuplicateWindow-time.Minute {
			old = append(old, r.ID)
		}
	}
	reported, err := n.emails.statusesOf(ctx, old...)
	if err != nil {
		return bus.ErrBatch(len(ids), err)
	}
	var msgs []*nats.Msg
	var sent []int
	for i, id := range ids {
		r, ok := recs[id]
		if !ok {
			continue // erased since: nothing to send
		}
		if len(reported[id]) > 0 {
			n.jobs.WithLabelValues(r.Kind, "already_handled").Inc()
			continue
		}
		msg, err := jobMsg(ctx, r)
		if err != nil {
			errs[i] = bus.Permanent(err)
			continue
		}
		if time.Since(r.CreatedAt) > events.DuplicateWindow-time.Minute {
			msg.Header.Set(HeaderRepublished, "1")
		}
		msgs = append(msgs, msg)
		sent = append(sent, i)
	}
	if err := n.bus.PublishBatch(ctx, msgs); err != nil {
		for _, i := range sent {
			errs[i] = err
		}
		return errs
	}
	for _, i := range sent {
		n.jobs.WithLabelValues(recs[ids[i]].Kind, "republished").Inc()
	}
	if len(sent) > 0 {
		n.log.Info("emails claimed before; jobs published again", "count", len(sent))
	}
	return errs
}
