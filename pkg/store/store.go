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
//
// On FerretDB 1.x it keeps only the unique ones, which fence, and drops a
// secondary one an earlier version created there: FerretDB 1.x serves no
// query from a secondary index (every query scans, NOTES.md), while every
// insert pays to keep each one (a JSON extraction and a B-tree insert: an
// InsertMany of email records with four took 12–25 % longer). On MongoDB
// they serve the organisers' queries.
func EnsureIndexes(ctx context.Context, db *mongo.Database, indexes ...Index) error {
	scans, err := scansAnyway(ctx, db)
	if err != nil {
		return err
	}
	for _, ix := range indexes {
		coll := db.Collection(ix.Collection)
		if scans && !ix.Unique {
			if err := dropIndex(ctx, coll, indexName(ix.Keys)); err != nil {
				return fmt.Errorf("store: drop the index %s on %s: %w", indexName(ix.Keys), ix.Collection, err)
			}
			continue
		}
		model := mongo.IndexModel{Keys: ix.Keys, Options: options.Index().SetUnique(ix.Unique)}
		if _, err := coll.Indexes().CreateOne(ctx, model); err != nil {
			return fmt.Errorf("store: index on %s: %w", ix.Collection, err)
		}
	}
	return nil
}

// scansAnyway reports whether db is FerretDB 1.x, which uses no secondary
// index for a query. FerretDB tells its version in buildInfo (MongoDB has
// no such field); built into a program, as `make run` does, 1.24 calls it
// "unknown". FerretDB 2 (on DocumentDB) uses indexes.
func scansAnyway(ctx context.Context, db *mongo.Database) (bool, error) {
	var info bson.M
	if err := db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return false, fmt.Errorf("store: buildInfo: %w", err)
	}
	v, ferret := info["ferretdbVersion"].(string)
	return ferret && (strings.HasPrefix(v, "v1.") || v == "unknown"), nil
}

// indexName is the name the driver gives an index on keys ("event_id_1").
func indexName(keys bson.D) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s_%v", k.Key, k.Value)
	}
	return strings.Join(parts, "_")
}

// dropIndex drops the index called name if coll has one.
func dropIndex(ctx context.Context, coll *mongo.Collection, name string) error {
	specs, err := coll.Indexes().ListSpecifications(ctx)
	var cmdErr mongo.CommandError
	if errors.As(err, &cmdErr) && cmdErr.Code == 26 { // NamespaceNotFound: no collection yet
		return nil
	}
	if err != nil {
		return err
	}
	for _, spec := range specs {
		if spec.Name == name {
			return coll.Indexes().DropOne(ctx, name)
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
