package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
)

// A handler that never answers exhausts MaxDeliver through ack timeouts; the
// message must still reach the DLQ, through the max-deliveries advisory.
func TestConsumeDeadLettersMessagesThatNeverGetAnAnswer(t *testing.T) {
	b, _ := newBus(t)
	release := make(chan struct{})
	defer close(release)
	cfg := consumerConfig(2)
	cfg.AckWait = 300 * time.Millisecond
	// Two workers hang on the two deliveries; the third keeps a pull open,
	// which is when NATS notices the message is out of deliveries.
	cfg.Workers = 3
	consume(t, b, cfg, func(ctx context.Context, d bus.Delivery) error {
		<-release
		return nil
	})
	env := publishEvent(t, b, events.RegistrationConfirmed)

	msg := dlqMsg(t, b)
	if !strings.Contains(msg.Header.Get(bus.HeaderReason), "max-deliveries advisory") {
		t.Fatalf("reason %q", msg.Header.Get(bus.HeaderReason))
	}
	if msg.Header.Get(bus.HeaderSubject) != events.RegistrationConfirmed {
		t.Fatalf("origin subject %q", msg.Header.Get(bus.HeaderSubject))
	}
	got, err := events.Parse(msg.Data)
	if err != nil || got.ID != env.ID {
		t.Fatalf("dead letter is not the original message: %v %+v", err, got)
	}
}
