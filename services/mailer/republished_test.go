package mailer

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// TestRepublishedJobIsNotSentTwice: notification publishes a job again past
// NATS's duplicate window when the mailer never reported on it; that is a
// new message, delivered once, so the mark it carries is what makes the
// mailer look the job up in its sent ledger.
func TestRepublishedJobIsNotSentTwice(t *testing.T) {
	h := newHarness(t)
	stop := h.start()
	defer stop()
	job := testJob(1)
	h.publish(job)
	h.smtp.WaitFor(t, 1, 10*time.Second)
	env, err := events.NewWithID(job.ID, "test", events.MailSend, "reg", job)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := bus.EnvelopeMsg(env)
	if err != nil {
		t.Fatal(err)
	}
	msg.Header.Set("Nats-Msg-Id", job.ID+"-after-the-window")
	msg.Header.Set(headerRepublished, "1")
	if err := h.bus.PublishBatch(context.Background(), []*nats.Msg{msg}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitIdle(t, h.bus.JS, events.StreamMail, "mailer")
	if got := len(h.smtp.Messages(t)); got != 1 {
		t.Errorf("job %s delivered %d times although the sent ledger has it", job.ID, got)
	}
}
