package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/events"
)

// maxDeliveriesAdvisory is what NATS publishes when a consumer gives up on a
// message after MaxDeliver deliveries without an ack.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries copies to the DLQ every message the consumer gave up on
// because its last delivery was never answered (a handler that hung past
// AckWait, a process that died mid-message). A handler's own failures on the
// last attempt are dead-lettered by handle; this catches the silent ones.
// Replicas share the watch through a queue group, and the dead letter's
// Nats-Msg-Id is the one handle would use, so each message lands once.
func (b *Bus) watchMaxDeliveries(ctx context.Context, cfg ConsumerConfig) (*nats.Subscription, error) {
	subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + cfg.Stream + "." + cfg.Durable
	return b.NC.QueueSubscribe(subject, "plenary-dlq."+cfg.Durable, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			b.log.Warn("max-deliveries advisory unreadable", "stream", cfg.Stream, "consumer", cfg.Durable)
			return
		}
		log := b.log.With("stream", cfg.Stream, "consumer", cfg.Durable, "stream_seq", adv.StreamSeq)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		stream, err := b.JS.Stream(ctx, cfg.Stream)
		if err != nil {
			log.Error("max deliveries: message not dead-lettered", "err", err)
			return
		}
		raw, err := stream.GetMsg(ctx, adv.StreamSeq)
		if err != nil {
			log.Error("max deliveries: message not dead-lettered", "err", err)
			return
		}
		reason := fmt.Sprintf("no answer after %d deliveries (max-deliveries advisory)", adv.Deliveries)
		hdr := dlqHeader(raw.Header, cfg, raw.Subject, reason)
		id := fmt.Sprintf("%s:%s:%d", cfg.Stream, cfg.Durable, adv.StreamSeq)
		dl := &nats.Msg{Subject: events.DLQSubject(cfg.Stream, cfg.Durable), Data: raw.Data, Header: hdr}
		if err := b.publishMsg(ctx, dl, id); err != nil {
			log.Error("max deliveries: message not dead-lettered", "err", err)
			return
		}
		log.Error("message dead-lettered", "reason", reason)
	})
}

// dlqHeader copies a message's headers, minus its Nats-Msg-Id, and records
// where it came from and why it was given up.
func dlqHeader(orig nats.Header, cfg ConsumerConfig, subject, reason string) nats.Header {
	hdr := nats.Header{}
	for k, v := range orig {
		// Not the message id (the dead letter has its own), nor the
		// headers of the atomic batch the message was stored in: the DLQ
		// stream would take the copy for part of a batch and refuse it.
		if k != jetstream.MsgIDHeader && !strings.HasPrefix(k, "Nats-Batch-") {
			hdr[k] = v
		}
	}
	hdr.Set(HeaderReason, truncate(reason, 1000))
	hdr.Set(HeaderStream, cfg.Stream)
	hdr.Set(HeaderConsumer, cfg.Durable)
	hdr.Set(HeaderSubject, subject)
	return hdr
}
