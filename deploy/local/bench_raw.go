package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/store"
)

// raw holds the bare infrastructure's rates on this machine, measured on the
// same NATS and FerretDB the system then runs on. The bare go-mail limits
// are measured beside the mail measures they are compared with (the drain,
// the fan-out), with those measures' own emails and connections.
type raw struct {
	publish     float64 // JetStream synchronous publishes/s, b.workers publishers
	batch100    float64 // JetStream atomic batches of 100, messages/s, one publisher
	batch500    float64 // the same in batches of 500
	insertOne   float64 // FerretDB InsertOne/s, b.workers writers
	insertMany  float64 // FerretDB InsertMany in batches of 500, documents/s, one writer
	batchedDocs int     // how many messages or documents each batched measure wrote
}

// rawLimits measures the bare limits, one after the other so that they do
// not compete.
func (b *bench) rawLimits(ctx context.Context) (raw, error) {
	// The batched measures are quick per message; give them enough
	// messages to be more than one or two fsyncs.
	r := raw{batchedDocs: max(b.n, 20000)}
	nc, err := nats.Connect(b.natsURL, bus.InProcessOptions(b.natsURL)...)
	if err != nil {
		return r, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return r, err
	}
	steps := []struct {
		name string
		run  func() error
	}{
		{"JetStream publish", func() (err error) { r.publish, err = b.rawPublish(ctx, js); return err }},
		{"JetStream atomic batch 100", func() (err error) { r.batch100, err = b.rawAtomicBatch(ctx, nc, js, 100, r.batchedDocs); return err }},
		{"JetStream atomic batch 500", func() (err error) { r.batch500, err = b.rawAtomicBatch(ctx, nc, js, 500, r.batchedDocs); return err }},
		{"Mongo", func() (err error) { r.insertOne, r.insertMany, err = b.rawMongo(ctx, r.batchedDocs); return err }},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			return r, fmt.Errorf("raw %s: %w", s.name, err)
		}
	}
	fmt.Fprintf(b.out, "  raw limits measured\n")
	return r, nil
}

// rawPublish: bare synchronous JetStream publishes of 800-byte messages
// with a Nats-Msg-Id, b.workers at a time on one connection (as a service
// publishes from its request handlers), to a file stream on the same
// fsync-always server.
func (b *bench) rawPublish(ctx context.Context, js jetstream.JetStream) (float64, error) {
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "BENCH_PUBLISH", Subjects: []string{"bench.publish"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return 0, err
	}
	body := bytes.Repeat([]byte("x"), 800)
	took, err := parallel(b.n, b.workers, func(i int) error {
		_, err := js.Publish(ctx, "bench.publish", body, jetstream.WithMsgID("p"+strconv.Itoa(i)))
		return err
	})
	return perSecond(b.n, took), err
}

// rawAtomicBatch: bare atomic batch publishes of size messages each, one
// batch after the other from one publisher, as a single decider would.
// nats.go has no helper yet: the batch is plain messages with the batch
// headers, and the commit is a request whose reply is the pub ack.
func (b *bench) rawAtomicBatch(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, size, docs int) (float64, error) {
	name, subject := fmt.Sprintf("BENCH_BATCH_%d", size), fmt.Sprintf("bench.batch.%d", size)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, AllowAtomicPublish: true,
	})
	if err != nil {
		return 0, err
	}
	body := bytes.Repeat([]byte("x"), 800)
	batches := docs / size
	start := time.Now()
	for k := range batches {
		if err := publishBatch(nc, subject, fmt.Sprintf("%s-%d", name, k), size, body); err != nil {
			return 0, err
		}
	}
	return perSecond(batches*size, time.Since(start)), nil
}

// publishBatch publishes one atomic batch and checks that its commit stored
// all of it.
func publishBatch(nc *nats.Conn, subject, id string, size int, body []byte) error {
	for seq := 1; seq <= size; seq++ {
		m := nats.NewMsg(subject)
		m.Data = body
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(seq))
		m.Header.Set(jetstream.MsgIDHeader, id+"-"+strconv.Itoa(seq))
		if seq < size {
			if err := nc.PublishMsg(m); err != nil {
				return err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		reply, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			return fmt.Errorf("batch %s commit: %w", id, err)
		}
		var ack struct {
			Error *struct {
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
			Count int `json:"count"`
		}
		if err := json.Unmarshal(reply.Data, &ack); err != nil {
			return fmt.Errorf("batch %s commit: %w", id, err)
		}
		if ack.Error != nil {
			return fmt.Errorf("batch %s: %s (err_code %d)", id, ack.Error.Description, ack.Error.ErrCode)
		}
		if ack.Count != size {
			return fmt.Errorf("batch %s: stored %d of %d", id, ack.Count, size)
		}
	}
	return nil
}

// rawMongo: bare inserts of registration-sized documents into collections
// with a unique index on the address, as a registration store has:
// InsertOne from b.workers writers, then unordered InsertMany in batches of
// 500 from one writer (as a single decider would).
func (b *bench) rawMongo(ctx context.Context, docs int) (one, many float64, err error) {
	db, err := store.Connect(ctx, b.mongoURI, "bench_raw", 10*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer store.Disconnect(db)
	unique := mongo.IndexModel{Keys: bson.D{{Key: "email", Value: 1}}, Options: options.Index().SetUnique(true)}
	for _, name := range []string{"one", "many"} {
		if _, err := db.Collection(name).Indexes().CreateOne(ctx, unique); err != nil {
			return 0, 0, err
		}
	}
	took, err := parallel(b.n, b.workers, func(i int) error {
		_, err := db.Collection("one").InsertOne(ctx, rawDoc(i))
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	one = perSecond(b.n, took)

	const batch = 500
	start := time.Now()
	for k := 0; k+batch <= docs; k += batch {
		page := make([]any, batch)
		for i := range page {
			page[i] = rawDoc(k + i)
		}
		if _, err := db.Collection("many").InsertMany(ctx, page, options.InsertMany().SetOrdered(false)); err != nil {
			return 0, 0, err
		}
	}
	return one, perSecond(docs/batch*batch, time.Since(start)), nil
}

// rawDoc is about the size of a registration record.
func rawDoc(i int) bson.D {
	return bson.D{
		{Key: "_id", Value: fmt.Sprintf("r%08d", i)},
		{Key: "event_id", Value: "bench"},
		{Key: "email", Value: fmt.Sprintf("raw-%d@example.org", i)},
		{Key: "name", Value: fmt.Sprintf("Participant %d", i)},
		{Key: "mode", Value: "online"},
		{Key: "status", Value: "confirmed"},
		{Key: "pad", Value: strings.Repeat("x", 300)},
	}
}
