// Package store connects to MongoDB (or FerretDB), creates indexes, and runs
// the transactional outbox. It uses only what FerretDB supports: no
// multi-document transactions, no change streams, no $expr.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// ErrNotFound is returned when a looked-up document does not exist.
var ErrNotFound = errors.New("not found")

// ErrDuplicate is returned when an insert hits a unique index.
var ErrDuplicate = errors.New("duplicate")

// Connect opens a client to uri, checks it answers within wait, and returns
// the named database.
func Connect(ctx context.Context, uri, database string, wait time.Duration) (*mongo.Database, error) {
	if wait <= 0 {
		wait = 10 * time.Second
	}
	client, err := mongo.Connect(options.Client().
		ApplyURI(uri).
		SetServerSelectionTimeout(wait).
		SetTimeout(30 * time.Second))
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := client.Ping(pctx, readpref.Primary()); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("store: cannot reach MongoDB (is it running? set MONGODB_URI): %w", err)
	}
	return client.Database(database), nil
}

// Disconnect closes the database's client.
func Disconnect(db *mongo.Database) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = db.Client().Disconnect(ctx)
}

// Ping reports whether the database answers.
func Ping(ctx context.Context, db *mongo.Database) error {
	return db.Client().Ping(ctx, readpref.Primary())
}

// Index is an index to create on a collection.
type Index struct {
	Collection string
	Keys       bson.D
	Unique     bool
}

// EnsureIndexes creates the indexes; creating an existing one is a no-op.
func EnsureIndexes(ctx context.Context, db *mongo.Database, indexes ...Index) error {
	for _, ix := range indexes {
		model := mongo.IndexModel{Keys: ix.Keys, Options: options.Index().SetUnique(ix.Unique)}
		if _, err := db.Collection(ix.Collection).Indexes().CreateOne(ctx, model); err != nil {
			return fmt.Errorf("store: index on %s: %w", ix.Collection, err)
		}
	}
	return nil
}

// Translate maps driver errors to this package's sentinels: a duplicate key
// becomes ErrDuplicate and no document becomes ErrNotFound.
func Translate(err error) error {
	switch {
	case err == nil:
		return nil
	case mongo.IsDuplicateKeyError(err),
		// FerretDB 1.24 reports a unique index violated by an update (not an
		// insert) as an InternalError carrying SQLite's message.
		strings.Contains(err.Error(), "UNIQUE constraint failed"):
		return fmt.Errorf("%w: %w", ErrDuplicate, err)
	case errors.Is(err, mongo.ErrNoDocuments):
		return ErrNotFound
	}
	return err
}
