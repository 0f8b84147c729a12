package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConnectUnreachable(t *testing.T) {
	start := time.Now()
	// Port 1 on loopback refuses connections.
	_, err := store.Connect(context.Background(), "mongodb://127.0.0.1:1", "x", 500*time.Millisecond)
	if err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "MONGODB_URI") {
		t.Errorf("error %q should tell the user to set MONGODB_URI", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Connect took %s with a 500ms wait", elapsed)
	}
}

func TestConnectRejectsBadURI(t *testing.T) {
	if _, err := store.Connect(context.Background(), "postgres://localhost", "x", time.Second); err == nil {
		t.Fatal("Connect with a non-MongoDB URI succeeded")
	}
}

func TestPing(t *testing.T) {
	db := testkit.Mongo(t)
	if err := store.Ping(ctxT(t), db); err != nil {
		t.Fatalf("Ping = %v", err)
	}
}

// On FerretDB 1.x, which answers every query by a scan, a secondary index
// is only a cost on each insert: EnsureIndexes keeps the unique ones and
// drops a secondary one left by an earlier version. On MongoDB it creates
// both.
func TestEnsureIndexesSecondaryOnlyWhereQueriesUseThem(t *testing.T) {
	db := testkit.Mongo(t)
	ctx := ctxT(t)
	scans, err := store.ScansAnyway(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	coll := db.Collection("emails")
	// As an earlier version created it.
	if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "created_at", Value: -1}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := store.EnsureIndexes(ctx, db,
			store.Index{Collection: "emails", Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "created_at", Value: -1}}},
			store.Index{Collection: "emails", Keys: bson.D{{Key: "key", Value: 1}}, Unique: true},
			store.Index{Collection: "statuses", Keys: bson.D{{Key: "job_id", Value: 1}}}, // no collection yet
		); err != nil {
			t.Fatalf("EnsureIndexes, call %d: %v", i+1, err)
		}
	}
	names := func(coll string) map[string]bool {
		t.Helper()
		specs, err := db.Collection(coll).Indexes().ListSpecifications(ctx)
		var cmdErr mongo.CommandError
		if errors.As(err, &cmdErr) && cmdErr.Code == 26 { // no such collection: no index
			return map[string]bool{}
		}
		if err != nil {
			t.Fatalf("indexes of %s: %v", coll, err)
		}
		out := map[string]bool{}
		for _, s := range specs {
			out[s.Name] = true
		}
		return out
	}
	emails, statuses := names("emails"), names("statuses")
	if !emails["key_1"] {
		t.Errorf("emails' indexes %v lack the unique key_1", emails)
	}
	if emails["event_id_1_created_at_-1"] == scans || statuses["job_id_1"] == scans {
		t.Errorf("FerretDB 1.x: %v; emails' indexes %v, statuses' %v: want the secondary ones only where queries use them", scans, emails, statuses)
	}
}

func TestEnsureIndexesUnique(t *testing.T) {
	db := testkit.Mongo(t)
	ctx := ctxT(t)
	ix := store.Index{Collection: "registrations", Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "email", Value: 1}}, Unique: true}
	for i := range 2 {
		if err := store.EnsureIndexes(ctx, db, ix); err != nil {
			t.Fatalf("EnsureIndexes, call %d: %v", i+1, err)
		}
	}
	coll := db.Collection("registrations")
	insert := func(id, event, email string) error {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "event_id", Value: event}, {Key: "email", Value: email}})
		return store.Translate(err)
	}
	if err := insert("r1", "e1", "ada@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := insert("r2", "e2", "ada@example.org"); err != nil {
		t.Fatalf("same email for another event: %v, want it accepted", err)
	}
	err := insert("r3", "e1", "ada@example.org")
	if !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("second registration for the same event = %v, want ErrDuplicate", err)
	}
	if !mongo.IsDuplicateKeyError(err) {
		t.Errorf("Translate must keep the driver error in the chain: %v", err)
	}
	if n, _ := coll.CountDocuments(ctx, bson.D{}); n != 2 {
		t.Errorf("collection holds %d documents, want 2", n)
	}
}

func TestTranslate(t *testing.T) {
	other := errors.New("connection reset")
	tests := []struct {
		name string
		in   error
		want error
	}{
		{"nil", nil, nil},
		{"no documents", mongo.ErrNoDocuments, store.ErrNotFound},
		{"wrapped no documents", fmt.Errorf("find: %w", mongo.ErrNoDocuments), store.ErrNotFound},
		{"other", other, other},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := store.Translate(tc.in)
			if !errors.Is(got, tc.want) || (tc.want == nil) != (got == nil) {
				t.Fatalf("Translate(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestTranslateFindOneMissing(t *testing.T) {
	db := testkit.Mongo(t)
	err := db.Collection("events").FindOne(ctxT(t), bson.D{{Key: "_id", Value: "nope"}}).Err()
	if got := store.Translate(err); !errors.Is(got, store.ErrNotFound) {
		t.Fatalf("Translate(FindOne of a missing id) = %v, want ErrNotFound", got)
	}
}

// An update that violates a unique index is a duplicate too, on MongoDB
// (E11000) and on FerretDB (which reports SQLite's UNIQUE constraint).
func TestTranslateDuplicateOnUpdate(t *testing.T) {
	db := testkit.Mongo(t)
	ctx := context.Background()
	if err := store.EnsureIndexes(ctx, db, store.Index{Collection: "things", Keys: bson.D{{Key: "slug", Value: 1}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	coll := db.Collection("things")
	for _, slug := range []string{"a", "b"} {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: slug}, {Key: "slug", Value: slug}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "slug", Value: "a"}})
	if !errors.Is(store.Translate(err), store.ErrDuplicate) {
		t.Fatalf("Translate(%v) is not ErrDuplicate", err)
	}
}

func TestInsertNewKeepsWhatIsThere(t *testing.T) {
	db := testkit.Mongo(t)
	coll := db.Collection("things")
	ctx := ctxT(t)
	type doc struct {
		ID string `bson:"_id"`
		V  int    `bson:"v"`
	}
	if err := store.InsertNew(ctx, coll, []doc{{"a", 1}, {"b", 1}}); err != nil {
		t.Fatal(err)
	}
	// A redelivered batch: one old, one new document.
	if err := store.InsertNew(ctx, coll, []doc{{"a", 2}, {"c", 2}}); err != nil {
		t.Fatalf("a batch with a document already there: %v", err)
	}
	var a doc
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&a); err != nil || a.V != 1 {
		t.Fatalf("a = %+v, %v; want the first version kept", a, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 3 {
		t.Fatalf("%d documents, %v; want 3", n, err)
	}
}
