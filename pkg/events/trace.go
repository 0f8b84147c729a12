package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// W3C trace context (traceparent) travels with every message: as the
// CloudEvents distributed-tracing extension attribute of the envelope and as
// the NATS header of the same name, so a registration, the email it causes
// and the status of that email share one trace id in every service's logs.

// TraceHeader is the header (HTTP and NATS) that carries the trace context.
const TraceHeader = "traceparent"

// NewTraceParent starts a new trace: version 00, random trace and span ids,
// sampled.
func NewTraceParent() string {
	return "00-" + randomHex(16) + "-" + randomHex(8) + "-01"
}

// ChildTraceParent continues parent's trace with a new span id, or starts a
// new trace when parent is not a valid traceparent.
func ChildTraceParent(parent string) string {
	id := TraceID(parent)
	if id == "" {
		return NewTraceParent()
	}
	return "00-" + id + "-" + randomHex(8) + "-" + parent[53:55]
}

// TraceID returns the trace id of a valid traceparent, or "".
func TraceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(tp) != 55 || len(parts) != 4 || parts[0] != "00" ||
		!isHex(parts[1], 32) || !isHex(parts[2], 16) || !isHex(parts[3], 2) ||
		parts[1] == strings.Repeat("0", 32) || parts[2] == strings.Repeat("0", 16) {
		return ""
	}
	return parts[1]
}

type traceKey struct{}

// WithTrace returns ctx carrying the traceparent tp.
func WithTrace(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, traceKey{}, tp)
}

// TraceFrom returns the traceparent ctx carries, or "".
func TraceFrom(ctx context.Context) string {
	tp, _ := ctx.Value(traceKey{}).(string)
	return tp
}

// Traced sets the envelope's traceparent to a child of the trace in ctx (a
// new trace if ctx has none) and returns the envelope.
func (e Envelope) Traced(ctx context.Context) Envelope {
	e.TraceParent = ChildTraceParent(TraceFrom(ctx))
	return e
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
