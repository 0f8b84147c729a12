package store

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// InsertNew inserts docs with one unordered InsertMany; documents already
// there (a duplicate key) are left as they are and are no error, so a
// redelivered batch inserts what is new and nothing twice. One insert for
// many documents is also one write on FerretDB (NOTES.md).
func InsertNew[T any](ctx context.Context, coll *mongo.Collection, docs []T) error {
	if len(docs) == 0 {
		return nil
	}
	many := make([]any, len(docs))
	for i := range docs {
		many[i] = docs[i]
	}
	_, err := coll.InsertMany(ctx, many, options.InsertMany().SetOrdered(false))
	if err != nil && !OnlyDuplicates(err) {
		return Translate(err)
	}
	return nil
}

// OnlyDuplicates reports whether an unordered InsertMany failed only on
// documents already there.
func OnlyDuplicates(err error) bool {
	var bulk mongo.BulkWriteException
	if !errors.As(err, &bulk) || bulk.WriteConcernError != nil {
		return false
	}
	for _, we := range bulk.WriteErrors {
		if !mongo.IsDuplicateKeyError(we) {
			return false
		}
	}
	return true
}
