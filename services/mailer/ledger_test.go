package mailer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// TestJobRecordedByOneProcessIsSkippedByAnother: a mailer process sends a
// job, records it and is killed before it acks; the job is redelivered to
// another process, which finds the record and does not send it again.
func TestJobRecordedByOneProcessIsSkippedByAnother(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mailer process")
	}
	h := newHarness(t)
	h.cfg.Workers = 1
	h.cfg.SMTP.Timeout = 2 * time.Second // AckWait 4 s, as the child's
	// Each email takes a second to be answered: the child's batch (both
	// jobs) is still open once job 0 is recorded.
	h.smtp.SetDelay(time.Second)
	ids := h.queue(2)
	child, stderr := startChild(t, h)

	// Job 0 is with the sink; job 1, next on the one connection, is refused
	// (451), so the child sends job 0 alone.
	testkit.Eventually(t, 30*time.Second, func() error {
		if h.smtp.Attempts() == 0 {
			return errors.New("no email at the sink yet")
		}
		return nil
	})
	h.smtp.FailTemporarily(1)
	// Kill the child once job 0 is recorded: its status and ack are due
	// only after job 1's answer, a second later.
	index, err := openSentIndex(context.Background(), h.bus.JS, newMetrics(prometheus.NewRegistry()), testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer index.close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		found, err := index.sentAmong(context.Background(), ids[:1])
		if err != nil {
			t.Fatal(err)
		}
		if found[ids[0]] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job 0 not recorded after 10 s; child's log:\n%s", stderr)
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if got := h.statuses(); len(got) > 0 {
		t.Fatalf("the child published statuses %v before it was killed; the test proves nothing", got)
	}

	h.smtp.SetDelay(0)
	h.start()
	h.waitStatus(ids[0], events.MailSent)
	h.waitStatus(ids[1], events.MailSent)
	testkit.WaitIdle(t, h.bus.JS, events.StreamMail, "mailer")
	seen := h.arrivals()
	for i, id := range ids {
		if n := seen["Subject "+id]; n != 1 {
			t.Errorf("job %d arrived %d times, want once", i, n)
		}
	}
	// Job 0 by the child; job 1 refused, then sent by the second process.
	if a := h.smtp.Attempts(); a != 3 {
		t.Errorf("%d SMTP attempts, want 3", a)
	}
	if m := scrape(t, h.url); !strings.Contains(m, `mailer_jobs_total{outcome="skipped_duplicate"} 1`) {
		t.Errorf("the second process skipped no recorded job:\n%s", m)
	}
}

// TestARecordIsSeenAtOnceByAnotherLedger: a lookup answers for every record
// stored before it, whoever wrote it.
func TestARecordIsSeenAtOnceByAnotherLedger(t *testing.T) {
	h := newHarness(t)
	newTestLedger := func() *ledger {
		b := h.nats.Bus(t)
		l, err := newLedger(context.Background(), b, testkit.Mongo(t), 4, time.Second, newMetrics(prometheus.NewRegistry()), testkit.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.close)
		return l
	}
	writer, reader := newTestLedger(), newTestLedger()
	for round := range 20 {
		var group []*entry
		var ids []string
		done := make(chan outcome, 3)
		for i := range 3 {
			job := testJob(round*10 + i)
			ids = append(ids, job.ID)
			group = append(group, &entry{task: &task{index: i, job: job, done: done}, sentAt: time.Now()})
			if err := writer.acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range group {
			writer.record(e)
		}
		for range group {
			if o := <-done; !o.sent || o.recordErr != nil {
				t.Fatalf("record: %+v", o)
			}
		}
		found, err := reader.sentAmong(context.Background(), append(ids, "never.sent"))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if !found[id] {
				t.Fatalf("round %d: %s recorded by one ledger, not found by the other", round, id)
			}
		}
		if found["never.sent"] {
			t.Fatal("a job never recorded is found")
		}
	}
}

// TestOldSentCollectionIsReadUntilRetired: records an older mailer wrote to
// MongoDB still stop a redelivered job, until they are old enough to be
// pruned; the empty collection is then dropped.
func TestOldSentCollectionIsReadUntilRetired(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	deps, err := service.Start(ctx, "mailer-test", h.cfg.Common, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer deps.Close()
	old := deps.DB.Collection(legacyCollection)
	if _, err := old.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: testJob(0).ID}, {Key: "sent_at", Value: time.Now().Add(-time.Hour)}},
		bson.D{{Key: "_id", Value: "long.ago"}, {Key: "sent_at", Value: time.Now().Add(-30 * 24 * time.Hour)}},
	}); err != nil {
		t.Fatal(err)
	}
	m, err := newMailer(ctx, deps, h.cfg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if m.ledger.legacy == nil {
		t.Fatal("the old sent collection is not read")
	}

	delivery := func(i, attempt int) bus.Delivery {
		env, _ := events.NewWithID(testJob(i).ID, "test", events.MailSend, "reg", testJob(i))
		return bus.Delivery{Envelope: env, Attempt: attempt}
	}
	for i, err := range m.handleBatch(ctx, []bus.Delivery{delivery(0, 2), delivery(1, 2)}) {
		if err != nil {
			t.Errorf("delivery %d: %v", i, err)
		}
	}
	seen := h.arrivals()
	if n := seen[testJob(0).Subject]; n != 0 {
		t.Errorf("job recorded in the old collection sent %d times, want 0", n)
	}
	if n := seen[testJob(1).Subject]; n != 1 {
		t.Errorf("job recorded nowhere sent %d times, want 1", n)
	}

	// A week's records stay; older ones go; an empty collection is dropped.
	if m.ledger.legacy.prune(ctx, events.MailRetention) {
		t.Fatal("retired with a record an hour old")
	}
	if n, _ := old.CountDocuments(ctx, bson.D{}); n != 1 {
		t.Errorf("%d records left after pruning, want 1", n)
	}
	if !m.ledger.legacy.prune(ctx, 0) {
		t.Fatal("not retired once every record is past keep")
	}
	names, err := deps.DB.ListCollectionNames(ctx, bson.D{{Key: "name", Value: legacyCollection}})
	if err != nil || len(names) != 0 {
		t.Errorf("collections %v (%v) after retiring, want none", names, err)
	}
	found, err := m.ledger.sentAmong(ctx, []string{testJob(0).ID, testJob(1).ID})
	if err != nil {
		t.Fatal(err)
	}
	if found[testJob(0).ID] || !found[testJob(1).ID] {
		t.Errorf("after retiring: found %v, want job 1 (on MAIL_SENT) alone", found)
	}
}
