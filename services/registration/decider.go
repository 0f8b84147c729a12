package registration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// The decider applies registration requests in the order the
// REGISTRATION_REQUESTS stream stored them. Every replica runs one, but a
// pinned priority group lets only one receive messages at a time; another
// is pinned when it stops pulling for PinnedTTL. A decider that receives
// messages under a pin id it has not seen rebuilds its state from the
// database before deciding anything.
const (
	deciderDurable = "decider"
	deciderGroup   = "decider"
	// maxDecideBatch bounds the requests of one batch (give or take a
	// group): one journal InsertMany, one registrations InsertMany and one
	// atomic publish for all of it.
	maxDecideBatch = 500
	// pullBytes is what the decider asks NATS for ahead of deciding: a
	// few batches of single requests, a few dozen groups.
	pullBytes = 8 << 20
)

type decider struct {
	r      *registrar
	log    *slog.Logger
	js     jetstream.JetStream
	stream jetstream.Stream
	cons   jetstream.Consumer
	m      *deciderMetrics

	states map[string]*eventState // by event id
	// cold are the events that existed at the last reload but were left
	// out of states (over for a while): loaded on first use. An event in
	// neither map was created since, and has no registration this decider
	// did not decide.
	cold   map[string]bool
	loaded bool // states and last match the database
	pinID  string
	last   int64 // position of the last request decided
}

func (r *registrar) newDecider(ctx context.Context, m *deciderMetrics) (*decider, error) {
	js := r.bus.JS
	stream, err := js.Stream(ctx, events.StreamRequests)
	if err != nil {
		return nil, fmt.Errorf("decider: %w", err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:   deciderDurable,
		AckPolicy: jetstream.AckExplicitPolicy,
		// A request held by a decider that died is redelivered after
		// AckWait; when no newer request arrives to reveal the gap, that
		// is how long a takeover waits. A live decider keeps its batch in
		// progress (heartbeat), so it can be short.
		AckWait:        deciderAckWait(r.cfg.DeciderPinnedTTL),
		MaxDeliver:     -1, // a request is never given up on
		MaxAckPending:  20_000,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		PriorityGroups: []string{deciderGroup},
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PinnedTTL:      r.cfg.DeciderPinnedTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("decider: consumer: %w", err)
	}
	return &decider{r: r, log: r.log.With("component", "decider"), js: js, stream: stream, cons: cons, m: m}, nil
}

// run decides until ctx ends. A batch that fails (MongoDB or NATS away) is
// retried until it succeeds, its messages kept in progress meanwhile, so
// nothing after it is decided first.
func (d *decider) run(ctx context.Context) error {
	// By bytes: a message can be a group of up to bus.MaxGroupBytes.
	it, err := d.cons.Messages(jetstream.PullMaxBytes(pullBytes), jetstream.PullPriorityGroup(deciderGroup))
	if err != nil {
		return fmt.Errorf("decider: %w", err)
	}
	go d.prune(ctx)
	defer func() {
		it.Stop()
		// Hand over at once rather than after PinnedTTL.
		uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if d.pinID != "" {
			_ = d.stream.UnpinConsumer(uctx, deciderDurable, deciderGroup)
		}
	}()
	for {
		first, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return fmt.Errorf("decider: %w", err)
			}
			d.log.Warn("decider: next", "err", err)
			select { // NATS away: do not spin
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		start := time.Now()
		batch, requests := d.collect(it, first)
		stop := d.heartbeat(batch)
		for attempt := 1; ; attempt++ {
			err := d.process(ctx, batch)
			if err == nil || ctx.Err() != nil {
				break
			}
			d.loaded = false // memory may be ahead of the database now
			delay := min(time.Duration(attempt)*200*time.Millisecond, 3*time.Second)
			d.log.Warn("decider: batch failed; retrying", "err", err, "attempt", attempt, "delay", delay)
			select {
			case <-ctx.Done():
				stop()
				return nil
			case <-time.After(delay):
			}
		}
		stop()
		d.m.batchSize.Observe(float64(requests))
		d.m.batchSeconds.Observe(time.Since(start).Seconds())
		d.m.decided.Add(float64(requests))
	}
}

// collect takes the messages that follow first into its batch while they
// keep arriving less than 2 ms apart, until it holds maxDecideBatch
// requests. (Waiting longer for bigger batches was tried: 50 ms made no
// difference to a rush.)
func (d *decider) collect(it jetstream.MessagesContext, first jetstream.Msg) (batch []jetstream.Msg, requests int) {
	batch, requests = []jetstream.Msg{first}, bus.GroupSize(first.Headers())
	for requests < maxDecideBatch {
		m, err := it.Next(jetstream.NextMaxWait(2 * time.Millisecond))
		if err != nil {
			break
		}
		batch = append(batch, m)
		requests += bus.GroupSize(m.Headers())
	}
	return batch, requests
}

// deciderAckWait is three pin lifetimes, at least ten seconds.
func deciderAckWait(pinnedTTL time.Duration) time.Duration {
	return max(3*pinnedTTL, 10*time.Second)
}

// heartbeat tells NATS the batch is still being worked on, every third of
// AckWait, until the returned function is called: a batch that takes long
// (MongoDB away) is not redelivered meanwhile.
func (d *decider) heartbeat(batch []jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	every := deciderAckWait(d.r.cfg.DeciderPinnedTTL) / 3
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range batch {
					_ = m.InProgress()
				}
			}
		}
	}()
	return func() { close(done) }
}

// item is one request to decide, at its position.
type item struct {
	pos int64
	req request
}

// process decides a batch: journal, write, announce, acknowledge, reply.
func (d *decider) process(ctx context.Context, batch []jetstream.Msg) error {
	for _, m := range batch {
		if pin := m.Headers().Get("Nats-Pin-Id"); pin != "" && pin != d.pinID {
			d.pinID = pin
			if err := d.repinned(ctx); err != nil {
				return err
			}
		}
	}
	if !d.loaded {
		if err := d.reload(ctx); err != nil {
			return err
		}
	}
	var done []jetstream.Msg  // decided before: acknowledge only
	var taken []jetstream.Msg // acknowledged once their requests are decided
	var todo []item
	next := d.last
	for _, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		seq := md.Sequence.Stream
		if lastOf(seq) <= next {
			done = append(done, m)
			continue
		}
		// Requests this decider never received (the one before took them
		// and stopped) wait for their redelivery no longer: read them.
		for gap := seqOf(next) + 1; gap < seq; gap++ {
			its, err := d.fromStream(ctx, gap)
			if err != nil {
				return err
			}
			todo = append(todo, its...)
		}
		todo = append(todo, d.items(seq, m.Headers(), m.Data(), next)...)
		taken = append(taken, m)
		next = lastOf(seq)
	}
	entries, err := d.decideAll(ctx, todo)
	if err != nil {
		return err
	}
	if err := d.commit(ctx, entries); err != nil {
		return err
	}
	d.last = next
	for _, m := range taken {
		_ = m.Ack()
	}
	for _, m := range done {
		_ = m.Ack()
	}
	return nil
}

// A position orders requests as NATS stored them: the stream sequence of
// their message, then their index in it (a message holds a group of
// requests, bus.Committer, or one). The journal, the waiting lists and the
// decider's progress count in positions.
const posBits = 10 // bus.MaxGroup < 1<<posBits

func position(seq uint64, index int) int64 { return int64(seq)<<posBits | int64(index) }

// lastOf is the position of the last request a message at seq can hold.
func lastOf(seq uint64) int64 { return position(seq, 1<<posBits-1) }

// seqOf is the stream sequence of the message holding pos.
func seqOf(pos int64) uint64 { return uint64(pos >> posBits) }

// items are the requests of the message at seq that come after pos. One
// that is not a request is skipped, logged: deciding it can never succeed.
func (d *decider) items(seq uint64, h nats.Header, data []byte, after int64) []item {
	bodies, err := bus.SplitGroup(h, data)
	if err != nil {
		d.log.Error("decider: group of requests is not JSON; skipped", "seq", seq, "err", err)
		return nil
	}
	its := make([]item, 0, len(bodies))
	for i, body := range bodies {
		it := item{pos: position(seq, i)}
		if it.pos <= after {
			continue
		}
		if err := json.Unmarshal(body, &it.req); err != nil {
			d.log.Error("decider: request is not JSON; skipped", "seq", seq, "index", i, "err", err)
			continue
		}
		its = append(its, it)
	}
	return its
}

// fromStream reads the requests of the message at seq from the stream
// itself.
func (d *decider) fromStream(ctx context.Context, seq uint64) ([]item, error) {
	raw, err := d.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil // aged out or deleted
	}
	if err != nil {
		return nil, fmt.Errorf("decider: read request %d: %w", seq, err)
	}
	return d.items(seq, raw.Header, raw.Data, 0), nil
}

// decideAll decides the items in order against the in-memory state and
// returns their journal entries.
func (d *decider) decideAll(ctx context.Context, todo []item) ([]*journalEntry, error) {
	entries := make([]*journalEntry, 0, len(todo))
	for i := range todo {
		it := &todo[i]
		st, err := d.state(ctx, it.req.EventID)
		if err != nil {
			return nil, err
		}
		e := &journalEntry{Seq: it.pos, RequestID: it.req.ID, EventID: it.req.EventID, Reply: it.req.Reply, At: time.Now().UTC()}
		var res result
		if st == nil {
			res.reply = reply{Status: "not_found", Detail: "no such event"}
		} else {
			res = st.decide(&it.req, uint64(it.pos), time.Now())
		}
		if err := d.r.journalize(e, &it.req, st, res); err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// commit records, writes and announces entries, then replies to whoever
// waits for them.
func (d *decider) commit(ctx context.Context, entries []*journalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	st := d.r.store
	if err := st.recordDecisions(ctx, entries); err != nil {
		return err
	}
	if err := st.applyDecisions(ctx, entries); err != nil {
		return err
	}
	return d.announce(ctx, entries)
}

// announce publishes the entries' outcome events (deduplicated by their
// ids, so announcing again is harmless) and answers waiting handlers.
func (d *decider) announce(ctx context.Context, entries []*journalEntry) error {
	var msgs []*nats.Msg
	for _, e := range entries {
		for _, m := range e.Messages {
			msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
			msg.Header.Set(jetstream.MsgIDHeader, m.ID)
			if e.TraceParent != "" { // every message of the entry carries it (buildMessages)
				msg.Header.Set(events.TraceHeader, e.TraceParent)
			}
			msgs = append(msgs, msg)
		}
	}
	if err := d.r.bus.PublishBatch(ctx, msgs); err != nil {
		return err
	}
	for _, e := range entries {
		if e.Reply != "" && e.ReplyBody != nil {
			_ = d.r.bus.NC.Publish(e.Reply, e.ReplyBody)
		}
	}
	return nil
}

// state returns the event's state; nil when there is no such event.
func (d *decider) state(ctx context.Context, eventID string) (*eventState, error) {
	if st, ok := d.states[eventID]; ok {
		return st, nil
	}
	ev, err := d.r.store.eventByID(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var regs []Registration
	if d.cold[eventID] {
		if regs, err = d.r.store.registrationsOf(ctx, eventID); err != nil {
			return nil, err
		}
	}
	st := newEventState(ev)
	st.load(regs)
	d.states[eventID] = st
	delete(d.cold, eventID)
	return st, nil
}

// hotFor is how long after its end an event's state is loaded with the
// others at a reload rather than on first use.
const hotFor = 14 * 24 * time.Hour

// loadStates reads every event and, in one pass over the registrations,
// the state of each event that is not long over. On FerretDB every query
// scans the whole collection (NOTES.md), so this one pass costs what
// loading the first event alone did, and spares a pass for every other
// event a rush touches (measured: 1.4–2.4 s each at 20,000 registrations).
func (d *decider) loadStates(ctx context.Context) error {
	evs, err := d.r.store.allEvents(ctx)
	if err != nil {
		return err
	}
	since := time.Now().Add(-hotFor)
	states, cold := map[string]*eventState{}, map[string]bool{}
	for i := range evs {
		if ev := &evs[i]; ev.EndsAt.IsZero() || ev.EndsAt.After(since) {
			states[ev.ID] = newEventState(ev)
		} else {
			cold[ev.ID] = true
		}
	}
	byEvent := map[string][]Registration{}
	err = d.r.store.eachRegistration(ctx, func(r Registration) {
		if states[r.EventID] != nil {
			byEvent[r.EventID] = append(byEvent[r.EventID], r)
		}
	})
	if err != nil {
		return err
	}
	for id, st := range states {
		st.load(byEvent[id])
	}
	d.states, d.cold = states, cold
	return nil
}

// repinned decides whether a new pin means someone else decided meanwhile.
// The server unpins a decider that has not pulled for PinnedTTL — another
// replica's, or this one busy with a long batch — and pins whoever pulls
// next. If this decider is pinned again and nobody acknowledged or
// journaled anything past its last decision, its state is still the truth
// and need not be reloaded.
func (d *decider) repinned(ctx context.Context) error {
	if !d.loaded {
		return nil
	}
	info, err := d.cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("decider: consumer info: %w", err)
	}
	later, err := d.r.store.pendingDecisions(ctx, d.last)
	if err != nil {
		return err
	}
	if lastOf(info.AckFloor.Stream) > d.last || len(later) > 0 {
		d.log.Info("decider: pinned after another decider decided; reloading", "last", d.last,
			"ack_floor", info.AckFloor.Stream, "journal_after_last", len(later))
		d.loaded = false
	} else {
		d.log.Debug("decider: pinned again; state unchanged", "last", d.last)
	}
	return nil
}

// reload finishes what the journal holds beyond the consumer's ack floor
// (written, maybe not applied or announced), forgets every event's state,
// and sets where deciding resumes.
func (d *decider) reload(ctx context.Context) error {
	info, err := d.cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("decider: consumer info: %w", err)
	}
	floor := lastOf(info.AckFloor.Stream)
	pending, err := d.r.store.pendingDecisions(ctx, floor)
	if err != nil {
		return err
	}
	d.last = floor
	if n := len(pending); n > 0 {
		d.last = max(floor, pending[n-1].Seq)
	}
	if err := d.r.store.applyDecisions(ctx, pending); errors.Is(err, errFence) {
		if pending, err = d.dropConflicting(ctx, pending); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := d.rebuildMessages(ctx, pending); err != nil {
		return err
	}
	if err := d.announce(ctx, pending); err != nil {
		return err
	}
	if err := d.loadStates(ctx); err != nil {
		return err
	}
	d.loaded = true
	d.log.Info("decider: state reloaded", "ack_floor", floor, "journal", len(pending), "resume_after", d.last)
	return nil
}

// rebuildMessages builds the outcome events of journal entries read back
// from the database, with each event as it now stands.
func (d *decider) rebuildMessages(ctx context.Context, entries []*journalEntry) error {
	evs := map[string]*Event{}
	for _, e := range entries {
		ev, ok := evs[e.EventID]
		if !ok {
			var err error
			if ev, err = d.r.store.eventByID(ctx, e.EventID); errors.Is(err, store.ErrNotFound) {
				ev = nil
			} else if err != nil {
				return err
			}
			evs[e.EventID] = ev
		}
		if err := d.r.buildMessages(e, ev); err != nil {
			d.log.Error("decider: journal entry cannot be announced again", "seq", e.Seq, "err", err)
		}
	}
	return nil
}

// The journal is pruned beside the decider, in every replica: only what the
// consumer's ack floor has passed (decided, written and announced) goes.
// Every journalPrune the spans wholly at or below the floor are dropped;
// every journalSweep the decided entries of the span the floor is in are
// deleted too (a scan of that span), so what an entry holds of a person is
// gone at most that long after its decision, however quiet the service.
var (
	journalPrune = 3 * time.Second
	journalSweep = 30 * time.Second // vars for tests
)

// prune prunes the journal until ctx ends.
func (d *decider) prune(ctx context.Context) {
	t := time.NewTicker(min(journalPrune, journalSweep))
	defer t.Stop()
	var swept time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		info, err := d.cons.Info(ctx)
		if err != nil {
			continue
		}
		sweep := time.Since(swept) >= journalSweep
		if err := d.r.store.pruneDecisions(ctx, lastOf(info.AckFloor.Stream), sweep); err != nil {
			if ctx.Err() == nil {
				d.log.Warn("decider: prune journal", "err", err)
			}
			continue
		}
		if sweep {
			swept = time.Now()
		}
	}
}

// dropConflicting handles a journal that cannot be applied: two deciders
// overlapped during a failover and decided on different states, and the
// unique indexes refused the later writes. Entries are applied one by one;
// from the first refused one on, the entries are deleted unannounced, and
// their requests decided again from the stream. It returns the entries
// that stand.
func (d *decider) dropConflicting(ctx context.Context, pending []*journalEntry) ([]*journalEntry, error) {
	for i, e := range pending {
		err := d.r.store.applyDecisions(ctx, []*journalEntry{e})
		if err == nil {
			continue
		}
		if !errors.Is(err, errFence) {
			return nil, err
		}
		d.log.Error("decider: journal entries conflict with the database; deciding them again",
			"from_seq", e.Seq, "count", len(pending)-i)
		if err := d.r.store.dropDecisionsFrom(ctx, e.Seq); err != nil {
			return nil, err
		}
		d.last = e.Seq - 1
		return pending[:i], nil
	}
	return pending, nil
}
