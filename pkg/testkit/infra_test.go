package testkit_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestNATSRestartKeepsStreams(t *testing.T) {
	n := testkit.StartNATS(t)
	b := n.Bus(t, events.StreamRegistration)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 3 {
		if err := b.Publish(ctx, events.RegistrationConfirmed, fmt.Sprint("m", i), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	url := n.URL

	n.Restart(t)
	if n.URL != url {
		t.Errorf("URL after restart = %s, want %s: clients reconnect to the old one", n.URL, url)
	}
	msgs := func() (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := b.JS.Stream(ctx, events.StreamRegistration)
		if err != nil {
			return 0, err
		}
		return s.CachedInfo().State.Msgs, nil
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		got, err := msgs()
		if err != nil {
			return err
		}
		if got != 3 {
			return fmt.Errorf("stream holds %d messages after restart, want 3", got)
		}
		return nil
	})
	// The dedupe window survives too: a replay is still dropped.
	if err := b.Publish(ctx, events.RegistrationConfirmed, "m0", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, events.RegistrationConfirmed, "m3", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if got, err := msgs(); err != nil || got != 4 {
		t.Errorf("stream holds %d messages (%v), want 4", got, err)
	}
}

func TestMongoGivesEachTestAFreshDatabase(t *testing.T) {
	var names []string
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			db := testkit.Mongo(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if n, err := db.Collection("registrations").CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
				t.Fatalf("fresh database holds %d registrations (%v), want 0", n, err)
			}
			if _, err := db.Collection("registrations").InsertOne(ctx, bson.D{{Key: "_id", Value: "r1"}}); err != nil {
				t.Fatal(err)
			}
			names = append(names, db.Name())
		})
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("database names %v, want two different ones", names)
	}

	// Each database is dropped when its test ends.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := store.Connect(ctx, testkit.MongoURI(t), "admin", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Disconnect(db)
	all, err := db.Client().ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if slices.Contains(all, name) {
			t.Errorf("database %s still exists after its test ended", name)
		}
	}
}

func TestReadStream(t *testing.T) {
	n := testkit.StartNATS(t)
	b := n.Bus(t, events.StreamRegistration)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var want []string
	for _, typ := range []string{events.RegistrationReceived, events.RegistrationConfirmed, events.RegistrationReceived} {
		env, err := events.New("test", typ, "r1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.PublishEvent(ctx, env); err != nil {
			t.Fatal(err)
		}
		want = append(want, env.ID)
	}

	all := testkit.ReadStream(t, b.JS, events.StreamRegistration)
	var ids []string
	for _, e := range all {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("ReadStream ids = %v, want %v in publish order", ids, want)
	}
	received := testkit.OfType(all, events.RegistrationReceived)
	if len(received) != 2 || received[0].ID != want[0] || received[1].ID != want[2] {
		t.Errorf("OfType(received) = %v, want the 1st and 3rd", received)
	}
}
