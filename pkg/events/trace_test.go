package events

import (
	"context"
	"strings"
	"testing"
)

func TestTraceParent(t *testing.T) {
	root := NewTraceParent()
	if TraceID(root) == "" {
		t.Fatalf("new traceparent %q is not valid", root)
	}
	child := ChildTraceParent(root)
	if TraceID(child) != TraceID(root) || child == root {
		t.Fatalf("child %q of %q: same trace, new span expected", child, root)
	}
	for _, bad := range []string{"", "garbage", "01-" + root[3:], strings.ToUpper(root),
		"00-00000000000000000000000000000000-" + root[36:], root[:54]} {
		if TraceID(bad) != "" {
			t.Errorf("TraceID(%q) accepted", bad)
		}
		if TraceID(ChildTraceParent(bad)) == "" {
			t.Errorf("ChildTraceParent(%q) did not start a new trace", bad)
		}
	}
	ctx := WithTrace(context.Background(), root)
	env, _ := New("test", RegistrationConfirmed, "r", Registration{})
	if got := env.Traced(ctx); TraceID(got.TraceParent) != TraceID(root) {
		t.Fatalf("Traced: %q, want trace %s", got.TraceParent, TraceID(root))
	}
	body, _ := env.Traced(ctx).Marshal()
	if back, err := Parse(body); err != nil || TraceID(back.TraceParent) != TraceID(root) {
		t.Fatalf("traceparent lost in the round trip: %v %+v", err, back)
	}
}
