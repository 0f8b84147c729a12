package registration

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/store"
)

// A journal entry is one decided request: the registrations it changed (as
// they stood after it), the event's new version if it changed the event,
// and the messages that announce it. Its _id is the request's position in
// the stream, so two deciders can never both record a decision for one
// request: the insert is the commit point. Entries are written in one
// InsertMany per batch, then applied, then announced; the decider drops
// them once the consumer's ack floor has passed them (pruneDecisions). A decider taking
// over finishes what the journal still holds before it decides anything.
// (Seq is the request's position: its message's stream sequence and its
// index in the message, see position.)
type journalEntry struct {
	Seq         int64            `bson:"_id"`
	RequestID   string           `bson:"request_id"`
	EventID     string           `bson:"event_id"`
	Regs        []Registration   `bson:"regs,omitempty"`
	Event       *Event           `bson:"event,omitempty"`
	Outcomes    []journalOutcome `bson:"outcomes,omitempty"`
	TraceParent string           `bson:"traceparent,omitempty"`
	Reply       string           `bson:"reply,omitempty"`
	ReplyBody   []byte           `bson:"reply_body,omitempty"`
	At          time.Time        `bson:"at"`
	// Messages are the outcome events, built from the entry (see
	// buildMessages) rather than stored: the same bytes every time, and
	// a journal a third the size for FerretDB to encode (measured: +15–20 %
	// accepted/s while the decider works).
	Messages []journalMsg `bson:"-"`
}

// journalOutcome is one event a decision announces: its type, the
// registration (as it stands in Regs, or Reg when the decision did not
// change it — a duplicate attempt, links asked again) and the reason.
type journalOutcome struct {
	Type   string        `bson:"type"`
	RegID  string        `bson:"registration_id,omitempty"`
	Reason string        `bson:"reason,omitempty"`
	Reg    *Registration `bson:"reg,omitempty"`
}

// journalMsg is an outcome event, ready to publish.
type journalMsg struct {
	Subject string `bson:"subject"`
	ID      string `bson:"id"`
	Data    []byte `bson:"data"`
}

// errFence means a unique index refused a write: another decider got there
// first. The decider reloads its state and tries again.
var errFence = errors.New("fence: a unique index refused the write; another decider was active")

// The journal is kept in collections of journalSpan positions each
// (journal_<position / journalSpan>), and pruned by dropping a collection
// once the consumer's ack floor has passed all of it. Deleting entries by a
// range of _id instead made FerretDB decode every entry left in the
// journal on each prune (NOTES.md): ~0.2–0.4 s every few seconds of a
// rush, a tenth of the decider's work. A position always maps to the same
// collection, so the insert of its _id is still the commit point.
//
// Entries written before requests were grouped are keyed by their stream
// sequence instead, in decisions_<seq / 4096> and, older still, decisions:
// the legacy collections, read (their keys turned into positions) and
// pruned while they still hold anything.
const (
	journalSpan   = 1024 << posBits
	journalPrefix = "journal_"
	legacyPrefix  = "decisions_"
	legacyJournal = "decisions"
)

// journalOf is the collection that holds the entry at pos.
func (s *regStore) journalOf(pos int64) *mongo.Collection {
	return s.db.Collection(journalPrefix + strconv.FormatInt(pos/journalSpan, 10))
}

// journals lists the journal's collections: their span numbers in order,
// and the legacy ones.
func (s *regStore) journals(ctx context.Context) (spans []int64, legacy []*mongo.Collection, err error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	slices.Sort(names)
	for _, name := range names {
		if n, ok := strings.CutPrefix(name, journalPrefix); ok {
			if span, err := strconv.ParseInt(n, 10, 64); err == nil {
				spans = append(spans, span)
			}
		} else if name == legacyJournal || strings.HasPrefix(name, legacyPrefix) {
			legacy = append(legacy, s.db.Collection(name))
		}
	}
	slices.Sort(spans)
	return spans, legacy, nil
}

// journalColl is a collection of the journal; raw when it is a legacy one,
// keyed by stream sequences.
type journalColl struct {
	*mongo.Collection
	raw bool
}

// after filters the entries past pos.
func (c journalColl) after(pos int64) bson.D {
	if c.raw { // sequence s is at position(s, 0)
		return bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: int64(seqOf(pos))}}}}
	}
	return bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: pos}}}}
}

// from filters the entries at pos and after.
func (c journalColl) from(pos int64) bson.D {
	if c.raw {
		return bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: (pos + 1<<posBits - 1) >> posBits}}}}
	}
	return bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: pos}}}}
}

// journalsFrom returns the collections that may hold entries from pos on.
func (s *regStore) journalsFrom(ctx context.Context, pos int64) ([]journalColl, error) {
	spans, legacy, err := s.journals(ctx)
	if err != nil {
		return nil, err
	}
	var out []journalColl
	for _, coll := range legacy {
		out = append(out, journalColl{coll, true})
	}
	for _, span := range spans {
		if (span+1)*journalSpan > pos {
			out = append(out, journalColl{s.db.Collection(journalPrefix + strconv.FormatInt(span, 10)), false})
		}
	}
	return out, nil
}

// recordDecisions inserts the batch's journal entries: one InsertMany per
// collection they fall in (mostly one).
func (s *regStore) recordDecisions(ctx context.Context, entries []*journalEntry) error {
	for len(entries) > 0 {
		span := entries[0].Seq / journalSpan
		n := 1
		for n < len(entries) && entries[n].Seq/journalSpan == span {
			n++
		}
		_, err := s.journalOf(entries[0].Seq).InsertMany(ctx, entries[:n], options.InsertMany().SetOrdered(false))
		if err = store.Translate(err); errors.Is(err, store.ErrDuplicate) {
			return errFence
		}
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		entries = entries[n:]
	}
	return nil
}

// pendingDecisions returns the entries after position after, in order.
func (s *regStore) pendingDecisions(ctx context.Context, after int64) ([]*journalEntry, error) {
	colls, err := s.journalsFrom(ctx, after+1)
	if err != nil {
		return nil, err
	}
	var out []*journalEntry
	for _, coll := range colls {
		cur, err := coll.Find(ctx, coll.after(after))
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		var part []*journalEntry
		if err := cur.All(ctx, &part); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		if coll.raw {
			for _, e := range part {
				e.Seq = position(uint64(e.Seq), 0)
			}
		}
		out = append(out, part...)
	}
	slices.SortFunc(out, func(a, b *journalEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// pruneDecisions forgets the entries up to position upTo: it drops each
// collection whose whole span is at or below upTo and, with partial,
// deletes the entries up to upTo from the one upTo falls in (a scan of that
// span; the entries hold names and addresses, which must not outlive an
// erasure or the retention period for long when fewer requests come than a
// span).
func (s *regStore) pruneDecisions(ctx context.Context, upTo int64, partial bool) error {
	spans, legacy, err := s.journals(ctx)
	if err != nil {
		return err
	}
	for _, span := range spans {
		coll := s.db.Collection(journalPrefix + strconv.FormatInt(span, 10))
		if (span+1)*journalSpan-1 > upTo {
			if partial && span*journalSpan <= upTo {
				if _, err := coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$lte", Value: upTo}}}}); err != nil {
					return fmt.Errorf("journal: %w", err)
				}
			}
			break
		}
		if err := coll.Drop(ctx); err != nil {
			return fmt.Errorf("journal: drop span %d: %w", span, err)
		}
	}
	for _, old := range legacy {
		if _, err := old.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$lte", Value: int64(seqOf(upTo))}}}}); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		if n, err := old.CountDocuments(ctx, bson.D{}); err == nil && n == 0 {
			if err := old.Drop(ctx); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
		}
	}
	return nil
}

// dropDecisionsFrom deletes the entries from position pos on.
func (s *regStore) dropDecisionsFrom(ctx context.Context, pos int64) error {
	colls, err := s.journalsFrom(ctx, pos)
	if err != nil {
		return err
	}
	for _, coll := range colls {
		if _, err := coll.DeleteMany(ctx, coll.from(pos)); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	return nil
}

// applyDecisions writes what the entries decided. The fast path writes each
// registration once, in its final state: the new ones with one InsertMany,
// the changed ones replaced in the order they last changed. Should a unique
// index refuse that order (a seat handed on twice in one batch), it writes
// every entry's after-states one by one in decision order, which never
// breaks an index unless another decider wrote meanwhile (errFence).
// Writing again what is written already changes nothing.
func (s *regStore) applyDecisions(ctx context.Context, entries []*journalEntry) error {
	err := s.applyCoalesced(ctx, entries)
	if !errors.Is(err, errFence) {
		return err
	}
	for _, e := range entries {
		for i := range e.Regs {
			if err := s.writeRegistration(ctx, &e.Regs[i]); err != nil {
				return err
			}
		}
	}
	return s.applyEvents(ctx, entries)
}

func (s *regStore) applyCoalesced(ctx context.Context, entries []*journalEntry) error {
	type last struct {
		reg  *Registration
		base int64 // version before the batch; 0: new
		pos  int
	}
	byID := map[string]*last{}
	pos := 0
	for _, e := range entries {
		for i := range e.Regs {
			r := &e.Regs[i]
			pos++
			l := byID[r.ID]
			if l == nil {
				l = &last{base: r.Version - 1}
				if r.Version == 1 {
					l.base = 0
				}
				byID[r.ID] = l
			}
			l.reg, l.pos = r, pos
		}
	}
	var inserts []any
	var updates []*last
	for _, l := range byID {
		if l.base == 0 {
			inserts = append(inserts, l.reg)
		} else {
			updates = append(updates, l)
		}
	}
	slices.SortFunc(updates, func(a, b *last) int { return a.pos - b.pos })
	for _, u := range updates {
		if err := s.writeRegistration(ctx, u.reg); err != nil {
			return err
		}
	}
	if len(inserts) > 0 {
		_, err := s.registrations.InsertMany(ctx, inserts, options.InsertMany().SetOrdered(false))
		if err := s.insertedOrOurs(ctx, inserts, err); err != nil {
			return err
		}
	}
	return s.applyEvents(ctx, entries)
}

// insertedOrOurs accepts an InsertMany error made only of duplicate _ids
// (a replay: the registration is there already) and turns a duplicate on
// another unique index into errFence.
func (s *regStore) insertedOrOurs(ctx context.Context, inserts []any, err error) error {
	if err == nil {
		return nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return fmt.Errorf("insert registrations: %w", err)
	}
	for _, we := range bwe.WriteErrors {
		if !mongo.IsDuplicateKeyError(we) || we.Index < 0 || we.Index >= len(inserts) {
			return fmt.Errorf("insert registrations: %w", err)
		}
		if ours, err := s.stored(ctx, inserts[we.Index].(*Registration).ID); err != nil || !ours {
			return errors.Join(errFence, err)
		}
	}
	return nil
}

// stored reports whether a registration with id is in the database: a
// duplicate-key error on its insert is then a replay, not a fence.
func (s *regStore) stored(ctx context.Context, id string) (bool, error) {
	n, err := s.registrations.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
	return n > 0, err
}

// writeRegistration writes r unless the stored copy is at r's version or
// later. Only the active decider writes registrations.
func (s *regStore) writeRegistration(ctx context.Context, r *Registration) error {
	if r.Version == 1 {
		_, err := s.registrations.InsertOne(ctx, r)
		if err = store.Translate(err); errors.Is(err, store.ErrDuplicate) {
			if ours, serr := s.stored(ctx, r.ID); serr != nil || !ours {
				return errors.Join(errFence, serr)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("insert registration %s: %w", r.ID, err)
		}
		return nil
	}
	res, err := s.registrations.ReplaceOne(ctx,
		bson.D{{Key: "_id", Value: r.ID}, {Key: "version", Value: bson.D{{Key: "$lt", Value: r.Version}}}},
		r, options.Replace().SetUpsert(false))
	if err = store.Translate(err); errors.Is(err, store.ErrDuplicate) {
		return errFence
	}
	if err != nil {
		return fmt.Errorf("write registration %s: %w", r.ID, err)
	}
	if res.MatchedCount == 0 {
		// Either written already (a replay) or never inserted: the first
		// version was lost with a crash between journal and write.
		ours, err := s.stored(ctx, r.ID)
		if err != nil {
			return fmt.Errorf("write registration %s: %w", r.ID, err)
		}
		if !ours {
			if _, err := s.registrations.InsertOne(ctx, r); err != nil && !mongo.IsDuplicateKeyError(err) {
				return fmt.Errorf("insert registration %s: %w", r.ID, err)
			}
		}
	}
	return nil
}

func (s *regStore) applyEvents(ctx context.Context, entries []*journalEntry) error {
	for _, e := range entries {
		if e.Event == nil {
			continue
		}
		_, err := s.events.ReplaceOne(ctx,
			bson.D{{Key: "_id", Value: e.Event.ID}, {Key: "version", Value: bson.D{{Key: "$lt", Value: e.Event.Version}}}},
			e.Event)
		if err = store.Translate(err); errors.Is(err, store.ErrDuplicate) {
			return errFence
		}
		if err != nil {
			return fmt.Errorf("write event %s: %w", e.Event.ID, err)
		}
	}
	return nil
}
