// Package testkit gives tests real dependencies: embedded NATS with JetStream
// on a temp dir, embedded FerretDB (a fresh database per test, or the server
// named by MONGODB_URI), an SMTP sink with fault injection, a logger that is
// shown only when a test fails, and Eventually for polling with a deadline.
package testkit

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// Main runs the package's tests and then stops the shared FerretDB. Call it
// from TestMain: func TestMain(m *testing.M) { testkit.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	stopFerret()
	os.Exit(code)
}

// Eventually calls check every 20ms until it returns nil or timeout passes,
// then fails the test with check's last error.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logger returns a JSON logger whose output is printed only if the test fails.
func Logger(t testing.TB) *slog.Logger {
	t.Helper()
	buf := &Buffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("TESTKIT_LOGS") != "" {
			t.Logf("logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Buffer is a bytes.Buffer that a logger and a test can use at once.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Errorf is fmt.Errorf, for checks passed to Eventually.
func Errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
