// Package bus is Plenary's thin layer over NATS JetStream: connecting, creating
// the streams, publishing with Nats-Msg-Id, and a consume loop that turns a
// handler's error into ack, nak-with-backoff or term-and-dead-letter.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/events"
)

// Bus is a connection to NATS with its JetStream context.
type Bus struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	log    *slog.Logger
	closed chan struct{}
}

// inProcess holds the NATS servers embedded in this process, by client
// URL: nats.InProcessConnProvider values (RegisterInProcess).
var inProcess sync.Map

// RegisterInProcess has Connect, and InProcessOptions, reach the NATS
// server embedded in this process at url through memory instead of over
// loopback TCP (nats.go's InProcessServer): `make run` and `make bench`
// run every service in the one process with NATS, and a round trip in
// memory is shorter (the mailer's sent-ledger record, one publish: 1.1–1.6
// against 1.9–2.3 ms in make bench) and costs no syscalls. Call the func
// it returns before the server shuts down, so that a later server on the
// same port is dialled over TCP.
func RegisterInProcess(url string, p nats.InProcessConnProvider) (unregister func()) {
	inProcess.Store(url, p)
	return func() { inProcess.CompareAndDelete(url, p) }
}

// InProcessOptions is what nats.Connect needs to reach url in memory, when
// a server embedded in this process was registered for it; none otherwise.
func InProcessOptions(url string) []nats.Option {
	if p, ok := inProcess.Load(url); ok {
		return []nats.Option{nats.InProcessServer(p.(nats.InProcessConnProvider))}
	}
	return nil
}

// Connect dials url and keeps reconnecting for ever once connected. If NATS
// cannot be reached within wait, it returns an error that says so. A server
// embedded in this process and registered for url is reached in memory.
func Connect(ctx context.Context, url, name string, wait time.Duration, log *slog.Logger) (*Bus, error) {
	if wait <= 0 {
		wait = 10 * time.Second
	}
	closed := make(chan struct{})
	opts := []nats.Option{
		nats.Name(name),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.Timeout(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
	}
	opts = append(opts, InProcessOptions(url)...)
	deadline := time.Now().Add(wait)
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			js, err := jetstream.New(nc)
			if err != nil {
				nc.Close()
				return nil, fmt.Errorf("bus: jetstream: %w", err)
			}
			return &Bus{NC: nc, JS: js, log: log, closed: closed}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bus: cannot reach NATS at %s after %s (is it running? set NATS_URL): %w", url, wait, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// EnsureStreams creates or updates the named streams from events.Streams.
func (b *Bus) EnsureStreams(ctx context.Context, replicas int, names ...string) error {
	defs := events.Streams(replicas)
	for _, name := range names {
		cfg, ok := defs[name]
		if !ok {
			return fmt.Errorf("bus: unknown stream %q", name)
		}
		if err := b.ensureStream(ctx, cfg); err != nil {
			return fmt.Errorf("bus: ensure stream %s: %w", name, err)
		}
	}
	return nil
}

// ensureStream creates or updates a stream. NATS cannot change a stream's
// retention policy (MAIL was a work queue) or persist mode (MAIL_SENT
// fsynced every record) in place: such a stream is recreated when it holds
// no message. One that holds messages is left as it is when its retention
// differs, and keeps its persist mode while the rest of its configuration
// is updated when only that differs, with a warning either way.
func (b *Bus) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	s, err := b.JS.Stream(ctx, cfg.Name)
	if err == nil {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		have := info.Config
		if have.Retention != cfg.Retention || have.PersistMode != cfg.PersistMode {
			if info.State.Msgs > 0 {
				b.log.Warn("stream keeps its retention policy and persist mode until it is empty",
					"stream", cfg.Name, "messages", info.State.Msgs,
					"have", have.Retention.String()+", "+have.PersistMode.String(),
					"want", cfg.Retention.String()+", "+cfg.PersistMode.String())
				if have.Retention != cfg.Retention {
					return nil
				}
				cfg.PersistMode = have.PersistMode
			} else {
				if err := b.JS.DeleteStream(ctx, cfg.Name); err != nil {
					return err
				}
				b.log.Info("stream recreated with a new retention policy or persist mode", "stream", cfg.Name,
					"retention", cfg.Retention.String(), "persist_mode", cfg.PersistMode.String())
			}
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err = b.JS.CreateOrUpdateStream(ctx, cfg)
	return err
}

// Publish sends body to subject with Nats-Msg-Id = msgID and waits for the
// stream's ack. A repeat of msgID within the duplicate window is dropped by
// the server and reported as success.
// The envelope's traceparent, if any, is copied into the traceparent header.
func (b *Bus) Publish(ctx context.Context, subject, msgID string, body []byte) error {
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	var trace struct {
		TraceParent string `json:"traceparent"`
	}
	if json.Unmarshal(body, &trace) == nil && trace.TraceParent != "" {
		msg.Header.Set(events.TraceHeader, trace.TraceParent)
	}
	return b.publishMsg(ctx, msg, msgID)
}

// ErrDisconnected is returned by Publish while the connection to NATS is
// down: waiting for the ack would only hold the caller up.
var ErrDisconnected = errors.New("nats: not connected")

func (b *Bus) publishMsg(ctx context.Context, msg *nats.Msg, msgID string) error {
	subject := msg.Subject
	if !b.NC.IsConnected() {
		return fmt.Errorf("bus: publish %s msg_id[%s]: %w", subject, msgID, ErrDisconnected)
	}
	if _, err := b.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("bus: publish %s msg_id[%s]: %w", subject, msgID, err)
	}
	return nil
}

// PublishEvent publishes an envelope on the subject named by its type.
func (b *Bus) PublishEvent(ctx context.Context, env events.Envelope) error {
	body, err := env.Marshal()
	if err != nil {
		return err
	}
	return b.Publish(ctx, env.Type, env.ID, body)
}

// Ready reports whether the connection is up and JetStream answers.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.NC.IsConnected() {
		return ErrDisconnected
	}
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	return nil
}

// Close drains the connection (pending publishes and acks go out) and waits
// for it to close.
func (b *Bus) Close() {
	if err := b.NC.Drain(); err != nil {
		b.NC.Close()
	}
	// Drain is asynchronous: wait for it, so the last acks and publishes
	// are on the wire before the process exits.
	select {
	case <-b.closed:
	case <-time.After(10 * time.Second):
		b.log.Warn("nats: drain did not finish in 10s; closing")
		b.NC.Close()
	}
}
