package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	for i, r := range recs {
		if dup[i] {
			log := bus.Log(ctx, n.log).With("job_id", r.ID, "event_id", r.EventID, "kind", r.Kind)
			errs[i] = n.replay(ctx, log, r.ID)
		}
	}
	return errs
}

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

// replay publishes a claimed email's job again. Within the stream's duplicate
// window NATS drops the repeat. Past it, a repeat would be a new job, so it
// is published only if the mailer never reported on the job: then the first
// publish was lost (or the job still waits in the queue, the rare case in
// which this sends a duplicate).
func (n *notifier) replay(ctx context.Context, log *slog.Logger, id string) error {
	rec, err := n.emails.get(ctx, id)
	if err != nil {
		return err
	}
	if time.Since(rec.CreatedAt) > events.DuplicateWindow-time.Minute {
		reported, err := n.emails.statusesOf(ctx, id)
		if err != nil {
			return err
		}
		if len(reported[id]) > 0 {
			n.jobs.WithLabelValues(rec.Kind, "already_handled").Inc()
			log.Info("email already handled; not queued again")
			return nil
		}
	}
	if err := n.publish(ctx, rec); err != nil {
		return err
	}
	n.jobs.WithLabelValues(rec.Kind, "republished").Inc()
	log.Info("email claimed before; job published again")
	return nil
}

// publish puts one record's job on the MAIL stream.
func (n *notifier) publish(ctx context.Context, rec emailRecord) error {
	msg, err := jobMsg(ctx, rec)
	if err != nil {
		return bus.Permanent(err)
	}
	return n.bus.PublishBatch(ctx, []*nats.Msg{msg})
}
