package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// FerretDB is a running embedded FerretDB.
type FerretDB struct {
	// URI is the MongoDB connection string of the server.
	URI    string
	cancel context.CancelFunc
	done   chan struct{}
}

// StartFerretDB starts FerretDB with the SQLite handler, keeping its files in
// dir. addr is the TCP address to listen on ("127.0.0.1:0" for a free port).
// FerretDB logs every error response at WARN, so give it a quiet logger.
func StartFerretDB(dir, addr string, log *slog.Logger) (*FerretDB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded ferretdb: %w", err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Logger:    log,
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
	})
	if err != nil {
		return nil, fmt.Errorf("embedded ferretdb: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	// MongoDBURI blocks until the listener is up; bound the wait.
	uri := make(chan string, 1)
	go func() { uri <- f.MongoDBURI() }()
	select {
	case u := <-uri:
		return &FerretDB{URI: u, cancel: cancel, done: done}, nil
	case <-done:
		cancel()
		return nil, errors.New("embedded ferretdb: stopped while starting")
	case <-time.After(30 * time.Second):
		cancel()
		return nil, errors.New("embedded ferretdb: not listening after 30s")
	}
}

// Stop shuts FerretDB down and waits for it.
func (f *FerretDB) Stop() {
	f.cancel()
	<-f.done
}
