package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/plenaryhq/plenary/pkg/events"
)

// Committer group-commits publishes from many goroutines into single
// messages: a body waits while the group before it is being stored, and
// whatever arrived meanwhile is stored next as one JetStream message, a
// JSON array of the bodies (one fsync for all of them). So a rush is no
// longer bound by the disk's fsync rate, and a quiet moment pays no more
// than a plain publish (a group of one).
//
// A group is one message where an atomic batch of the same requests would
// be many: nats-server stages an atomic batch on a single server in a file
// store of its own (directory, metadata, flush, commit, removal), several
// journal commits that took ~25 ms each under a rush here, while a group
// costs one. What a group gives up is a message id per body: NATS
// deduplicates the group, not what is in it, so only bodies that need no
// deduplication (fresh ids) belong here. A consumer reads a group with
// SplitGroup.
type Committer struct {
	bus     *Bus
	subject string
	stored  func(n int) // told the size of each group stored; may be nil
	queue   chan *pending
	wg      sync.WaitGroup
}

type pending struct {
	body []byte
	ctx  context.Context
	done chan error
}

// HeaderGroup marks a group message; its value is the number of bodies.
const HeaderGroup = "Plenary-Group"

// A group holds at most MaxGroup bodies and, unless a single body is
// larger, MaxGroupBytes: well under NATS's 1 MB payload limit.
const (
	MaxGroup      = 1000
	MaxGroupBytes = 512 << 10
)

// NewCommitter starts workers goroutines that each store one group at a
// time on subject. One lets the next group fill for as long as the one
// before takes to be stored; a second overlaps a group's round trip with
// the next one's fsync. stored, if not nil, is told the size of every
// group NATS stored (for a metric). Stop it with Close.
func NewCommitter(b *Bus, subject string, workers int, stored func(n int)) *Committer {
	c := &Committer{bus: b, subject: subject, stored: stored, queue: make(chan *pending, 4096)}
	for range max(workers, 1) {
		c.wg.Add(1)
		go c.run()
	}
	return c
}

// Publish stores body (a JSON value) and returns once NATS has
// acknowledged its group, or with the error of its group.
func (c *Committer) Publish(ctx context.Context, body []byte) error {
	p := &pending{body: body, ctx: ctx, done: make(chan error, 1)}
	select {
	case c.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The body may still be stored; the caller answers an error.
		return ctx.Err()
	}
}

// Close stops the workers once the queue is empty.
func (c *Committer) Close() {
	close(c.queue)
	c.wg.Wait()
}

func (c *Committer) run() {
	defer c.wg.Done()
	var held *pending // taken from the queue, too big for the group before
	for {
		first := held
		held = nil
		if first == nil {
			var ok bool
			if first, ok = <-c.queue; !ok {
				return
			}
		}
		group := []*pending{first}
		size := len(first.body)
	fill:
		for len(group) < MaxGroup {
			select {
			case p, ok := <-c.queue:
				if !ok {
					break fill
				}
				if size+len(p.body)+1 > MaxGroupBytes {
					held = p
					break fill
				}
				group = append(group, p)
				size += len(p.body) + 1
			default:
				break fill
			}
		}
		c.store(group)
	}
}

// store publishes the live bodies of group as one message and answers
// each.
func (c *Committer) store(group []*pending) {
	var data bytes.Buffer
	live := group[:0]
	for _, p := range group {
		if p.ctx.Err() != nil {
			p.done <- p.ctx.Err() // its caller gave up: not stored
			continue
		}
		if len(live) == 0 {
			data.WriteByte('[')
		} else {
			data.WriteByte(',')
		}
		data.Write(p.body)
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	data.WriteByte(']')
	msg := &nats.Msg{Subject: c.subject, Data: data.Bytes(), Header: nats.Header{}}
	msg.Header.Set(HeaderGroup, strconv.Itoa(len(live)))
	// The group outlives any one caller's context.
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	err := c.bus.publishMsg(ctx, msg, events.NewID())
	cancel()
	if err == nil && c.stored != nil {
		c.stored(len(live))
	}
	for _, p := range live {
		p.done <- err
	}
}

// SplitGroup returns the bodies of a message with header h and data: those
// of a group, or data as the only one.
func SplitGroup(h nats.Header, data []byte) ([]json.RawMessage, error) {
	if h.Get(HeaderGroup) == "" {
		return []json.RawMessage{data}, nil
	}
	var bodies []json.RawMessage
	if err := json.Unmarshal(data, &bodies); err != nil {
		return nil, fmt.Errorf("bus: group: %w", err)
	}
	return bodies, nil
}

// GroupSize is the number of bodies in a message with header h.
func GroupSize(h nats.Header) int {
	if n, err := strconv.Atoi(h.Get(HeaderGroup)); err == nil && n > 0 {
		return n
	}
	return 1
}
