package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/embedded"
	"github.com/plenaryhq/plenary/pkg/store"
)

var ferret struct {
	once sync.Once
	db   *embedded.FerretDB
	dir  string
	err  error
}

// MongoURI returns the MongoDB to test against: MONGODB_URI if set, otherwise
// an embedded FerretDB shared by the test binary (stopped by Main).
func MongoURI(t testing.TB) string {
	t.Helper()
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		return uri
	}
	ferret.once.Do(func() {
		ferret.dir, ferret.err = os.MkdirTemp("", "plenary-ferretdb-")
		if ferret.err != nil {
			return
		}
		ferret.db, ferret.err = embedded.StartFerretDB(ferret.dir, "127.0.0.1:0", nil)
	})
	if ferret.err != nil {
		t.Fatalf("testkit: %v", ferret.err)
	}
	return ferret.db.URI
}

func stopFerret() {
	if ferret.db != nil {
		ferret.db.Stop()
	}
	if ferret.dir != "" {
		_ = os.RemoveAll(ferret.dir)
	}
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// DatabaseName returns a fresh database name for t, dropped when t ends. It
// is short enough (at most 31 characters) to take a suffix: FerretDB limits
// names.
func DatabaseName(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.ToLower(unsafeName.ReplaceAllString(strings.TrimPrefix(t.Name(), "Test"), ""))
	if len(name) > 20 {
		name = name[:20]
	}
	name = "t_" + name + "_" + hex.EncodeToString(b)
	DropOnCleanup(t, name)
	return name
}

// DropOnCleanup drops the named databases when t ends.
func DropOnCleanup(t testing.TB, names ...string) {
	t.Helper()
	uri := MongoURI(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, name := range names {
			db, err := store.Connect(ctx, uri, name, 5*time.Second)
			if err != nil {
				return
			}
			_ = db.Drop(ctx)
			store.Disconnect(db)
		}
	})
}

// Mongo returns a connected, fresh database for t.
func Mongo(t testing.TB) *mongo.Database {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uri := MongoURI(t)
	db, err := store.Connect(ctx, uri, DatabaseName(t), 20*time.Second)
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	t.Cleanup(func() { store.Disconnect(db) })
	return db
}
