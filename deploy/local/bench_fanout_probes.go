package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/services/mailer"
)

// changeJobs reads the jobs stored on MAIL since the change, headers only,
// for when the first and last were stored, and returns the last in full as
// the template of the bare measure.
func changeJobs(ctx context.Context, js jetstream.JetStream, since time.Time) (events.MailJob, span, error) {
	var job events.MailJob
	cons, err := js.OrderedConsumer(ctx, events.StreamMail, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.MailSend}, DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime: &since, HeadersOnly: true,
	})
	if err != nil {
		return job, span{}, err
	}
	var stored []time.Time
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return job, span{}, err
		}
		got := 0
		var pending uint64
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return job, span{}, err
			}
			stored = append(stored, meta.Timestamp)
			pending = meta.NumPending
			got++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return job, span{}, err
		}
		if got == 0 || pending == 0 {
			break
		}
	}
	st, err := js.Stream(ctx, events.StreamMail)
	if err != nil {
		return job, span{}, err
	}
	last, err := st.GetLastMsgForSubject(ctx, events.MailSend)
	if err != nil {
		return job, span{}, err
	}
	env, err := events.Parse(last.Data)
	if err == nil {
		err = env.Decode(&job)
	}
	return job, spanOf(stored), err
}

// bareFanout is bare go-mail sending n copies of the change's job over the
// fan-out's connections into the same sink.
func (b *bench) bareFanout(ctx context.Context, tmpl events.MailJob, n int) (float64, error) {
	cfg, err := b.mailerConfig()
	if err != nil {
		return 0, err
	}
	rate, err := mailer.BareSendRate(ctx, cfg.SMTP, fanoutWorkers, n, func(i int) events.MailJob {
		job := tmpl
		job.ID, job.To, job.RegistrationID = fmt.Sprintf("bare-fanout.%d", i), fmt.Sprintf("bare-fanout-%d@example.org", i), ""
		return job
	})
	if err != nil {
		return 0, fmt.Errorf("bare go-mail, %d connections: %w", fanoutWorkers, err)
	}
	return rate, nil
}

// startPartProfile starts a CPU profile of one part of the bench if path
// names a file, and returns what stops it. A whole-run profile
// (--cpuprofile) excludes it.
func startPartProfile(b *bench, part, path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.log.Warn("profile not written", "part", part, "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.log.Warn("profile not written (is --cpuprofile on?)", "part", part, "err", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// startPartAllocs writes the heap profile's allocation counts at the start
// of one part of the bench to path+".base" and at its end to path, if path
// names a file, and returns what writes the second: `go tool pprof
// -sample_index=alloc_space -base path.base path` shows what the part
// allocated.
func startPartAllocs(b *bench, part, path string) func() {
	if path == "" {
		return func() {}
	}
	write := func(name string) {
		f, err := os.Create(name)
		if err == nil {
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
		if err != nil {
			b.log.Warn("allocation profile not written", "part", part, "err", err)
		}
	}
	write(path + ".base")
	return func() { write(path) }
}

// readReplica times, afterwards, the query a notice starts with: every
// version of every registration of the event in notification's replica
// (participants.current). FerretDB on SQLite scans the collection and
// matches in Go (NOTES.md), so this is what stands between the release and
// the first email. It names notification's database and collection, the
// one place the bench looks inside a service; a failure only leaves the row
// empty.
func (b *bench) readReplica(ctx context.Context, eventID string) (time.Duration, int) {
	db, err := store.Connect(ctx, b.mongoURI, "plenary_"+Notification, 10*time.Second)
	if err != nil {
		b.log.Warn("replica read not measured", "err", err)
		return 0, 0
	}
	defer store.Disconnect(db)
	start := time.Now()
	cur, err := db.Collection("participants").Find(ctx, bson.D{{Key: "event_id", Value: eventID}})
	if err != nil {
		b.log.Warn("replica read not measured", "err", err)
		return 0, 0
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil {
		b.log.Warn("replica read not measured", "err", err)
		return 0, 0
	}
	return time.Since(start), len(docs)
}
