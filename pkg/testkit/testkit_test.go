package testkit_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// fakeTB stands in for a test that is expected to fail, so that the
// failing paths of the helpers can be checked without failing this test.
type fakeTB struct {
	testing.TB // nil: calling anything not overridden panics

	mu       sync.Mutex
	failed   bool
	fatal    string
	logs     []string
	cleanups []func()
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Name() string { return "fake" }

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failed = true
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// runFake runs body as a test of its own, on its own goroutine as Fatalf
// needs, then its cleanups, and returns it.
func runFake(body func(tb *fakeTB)) *fakeTB {
	tb := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(tb)
	}()
	<-done
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
	return tb
}

func TestEventuallyReturnsOnceTheCheckPasses(t *testing.T) {
	calls := 0
	tb := runFake(func(tb *fakeTB) {
		testkit.Eventually(tb, 5*time.Second, func() error {
			calls++
			if calls < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	})
	if tb.Failed() || calls != 3 {
		t.Fatalf("failed %v (%s) after %d calls; want success on the 3rd call", tb.Failed(), tb.fatal, calls)
	}
}

func TestEventuallyFailsWithTheLastError(t *testing.T) {
	calls := 0
	start := time.Now()
	tb := runFake(func(tb *fakeTB) {
		testkit.Eventually(tb, 100*time.Millisecond, func() error {
			calls++
			return fmt.Errorf("attempt %d", calls)
		})
		t.Error("Eventually returned after its deadline instead of failing")
	})
	if !tb.Failed() {
		t.Fatal("Eventually did not fail the test")
	}
	if want := fmt.Sprintf("attempt %d", calls); !strings.Contains(tb.fatal, want) || !strings.Contains(tb.fatal, "100ms") {
		t.Errorf("failure %q should give the timeout and the last error %q", tb.fatal, want)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second || calls < 2 {
		t.Errorf("%d calls in %s with a 100ms timeout", calls, elapsed)
	}
}

func TestLoggerShowsLogsOnlyWhenTheTestFails(t *testing.T) {
	t.Setenv("TESTKIT_LOGS", "")
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("failed=%v", fail), func(t *testing.T) {
			tb := runFake(func(tb *fakeTB) {
				testkit.Logger(tb).Info("claimed seat", "registration_id", "r1")
				if fail {
					tb.Fatalf("boom")
				}
			})
			shown := strings.Contains(strings.Join(tb.logs, "\n"), `"registration_id":"r1"`)
			if shown != fail {
				t.Errorf("logs shown = %v for a test that failed = %v (logs %q)", shown, fail, tb.logs)
			}
		})
	}
}

func TestErrorf(t *testing.T) {
	base := errors.New("base")
	if err := testkit.Errorf("wrap %d: %w", 1, base); !errors.Is(err, base) || err.Error() != "wrap 1: base" {
		t.Fatalf("Errorf = %v", err)
	}
}

func TestMetric(t *testing.T) {
	body := []byte("# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{kind=\"a\"} 2\njobs_total{kind=\"ab\"} 7\nsize_sum 12.5\n")
	for _, c := range []struct {
		name string
		want float64
		ok   bool
	}{
		{`jobs_total{kind="a"}`, 2, true},
		{`jobs_total{kind="ab"}`, 7, true},
		{"size_sum", 12.5, true},
		{"size", 0, false},
		{"missing_total", 0, false},
	} {
		if v, ok := testkit.Metric(body, c.name); v != c.want || ok != c.ok {
			t.Errorf("Metric(%s) = %v, %v; want %v, %v", c.name, v, ok, c.want, c.ok)
		}
	}
}
