package notification

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/store"
)

// Collections. Both are append-only on the hot path: one insert per email
// (the claim) and one per status report. Neither is ever updated, because on
// FerretDB every update scans the collection (NOTES.md).
const (
	emailsCollection = "emails"
	statusCollection = "email_status"
)

// emailRecord is one rendered email. Its _id is the mail job id, derived from
// the dedupe key, so inserting it claims the email.
type emailRecord struct {
	ID             string       `bson:"_id"`
	EventID        string       `bson:"event_id"`
	RegistrationID string       `bson:"registration_id"`
	Kind           string       `bson:"kind"`
	To             string       `bson:"to"`
	ToName         string       `bson:"to_name,omitempty"`
	Subject        string       `bson:"subject"`
	Text           string       `bson:"text,omitempty"`
	HTML           string       `bson:"html,omitempty"`
	Attachments    []attachment `bson:"attachments,omitempty"`
	// Headers are extra header fields (List-Unsubscribe on announcements).
	Headers   map[string]string `bson:"headers,omitempty"`
	CreatedAt time.Time         `bson:"created_at"`
	// TraceParent continues the trace of what caused the email.
	TraceParent string `bson:"traceparent,omitempty"`
	// A resend is the same content as a new job: ResendOf is the first
	// email of its chain (never itself a resend), Resend its number in the
	// chain, and its id <ResendOf>.resend.<Resend>. IdempotencyKey is the
	// organiser's key, scoped to the request, that asked for it.
	ResendOf       string `bson:"resend_of,omitempty"`
	Resend         int    `bson:"resend,omitempty"`
	IdempotencyKey string `bson:"idempotency_key,omitempty"`
}

// root is the first email of the record's resend chain.
func (r emailRecord) root() string {
	if r.ResendOf != "" {
		return r.ResendOf
	}
	return r.ID
}

// resent returns the record's content as resend n of its chain, a new job.
func (r emailRecord) resent(n int, key string, now time.Time) emailRecord {
	c := r
	c.ResendOf = r.root()
	c.ID = fmt.Sprintf("%s.resend.%d", c.ResendOf, n)
	c.Resend, c.IdempotencyKey, c.CreatedAt = n, key, now.UTC()
	c.TraceParent = "" // the organiser's request carries the trace
	return c
}

type attachment struct {
	Name        string `bson:"name"`
	ContentType string `bson:"content_type"`
	Data        []byte `bson:"data"`
}

// job is the mail job the record is sent as; a replay yields the same job.
func (r emailRecord) job() events.MailJob {
	j := events.MailJob{
		ID: r.ID, EventID: r.EventID, RegistrationID: r.RegistrationID, Kind: r.Kind,
		To: r.To, ToName: r.ToName, Subject: r.Subject, Text: r.Text, HTML: r.HTML, Headers: r.Headers,
	}
	for _, a := range r.Attachments {
		j.Attachments = append(j.Attachments, events.Attachment{Name: a.Name, ContentType: a.ContentType, Data: a.Data})
	}
	return j
}

// statusRecord is one status report from the mailer, keyed by its envelope id.
type statusRecord struct {
	ID      string    `bson:"_id"`
	JobID   string    `bson:"job_id"`
	EventID string    `bson:"event_id,omitempty"`
	Status  string    `bson:"status"`
	Attempt int       `bson:"attempt"`
	Detail  string    `bson:"detail,omitempty"`
	At      time.Time `bson:"at"`
}

// emailStore is the email log: rendered emails and their delivery statuses.
type emailStore struct {
	emails   *mongo.Collection
	statuses *mongo.Collection
}

func newEmailStore(db *mongo.Database) *emailStore {
	return &emailStore{emails: db.Collection(emailsCollection), statuses: db.Collection(statusCollection)}
}

// ensureIndexes serves the admin queries on MongoDB (FerretDB scans anyway).
func (s *emailStore) ensureIndexes(ctx context.Context) error {
	return store.EnsureIndexes(ctx, s.emails.Database(),
		store.Index{Collection: emailsCollection, Keys: bson.D{{Key: "event_id", Value: 1}}},
		store.Index{Collection: emailsCollection, Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "created_at", Value: -1}, {Key: "_id", Value: 1}}},
		store.Index{Collection: emailsCollection, Keys: bson.D{{Key: "resend_of", Value: 1}}},
		store.Index{Collection: statusCollection, Keys: bson.D{{Key: "job_id", Value: 1}}},
		store.Index{Collection: statusCollection, Keys: bson.D{{Key: "event_id", Value: 1}, {Key: "status", Value: 1}}},
	)
}

// getMany returns the records with the ids that exist, by id: one query.
func (s *emailStore) getMany(ctx context.Context, ids []string) (map[string]emailRecord, error) {
	out := map[string]emailRecord{}
	if len(ids) == 0 {
		return out, nil
	}
	cur, err := s.emails.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return nil, fmt.Errorf("get %d email jobs: %w", len(ids), store.Translate(err))
	}
	var recs []emailRecord
	if err := cur.All(ctx, &recs); err != nil {
		return nil, fmt.Errorf("get %d email jobs: %w", len(ids), store.Translate(err))
	}
	for _, r := range recs {
		out[r.ID] = r
	}
	return out, nil
}

// get returns the record with id, or store.ErrNotFound.
func (s *emailStore) get(ctx context.Context, id string) (emailRecord, error) {
	var r emailRecord
	err := store.Translate(s.emails.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&r))
	if err != nil {
		return r, fmt.Errorf("get email job[%s]: %w", id, err)
	}
	return r, nil
}

// addStatuses records status reports; a repeat of the same report is fine.
func (s *emailStore) addStatuses(ctx context.Context, recs []statusRecord) error {
	if err := store.InsertNew(ctx, s.statuses, recs); err != nil {
		return fmt.Errorf("record %d statuses: %w", len(recs), err)
	}
	return nil
}

// statusesOf returns the status reports of the jobs, by job id, oldest first.
func (s *emailStore) statusesOf(ctx context.Context, jobIDs ...string) (map[string][]statusRecord, error) {
	out := map[string][]statusRecord{}
	if len(jobIDs) == 0 {
		return out, nil
	}
	filter := bson.D{{Key: "job_id", Value: bson.D{{Key: "$in", Value: jobIDs}}}}
	cur, err := s.statuses.Find(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("email statuses: %w", err)
	}
	var recs []statusRecord
	if err := cur.All(ctx, &recs); err != nil {
		return nil, fmt.Errorf("email statuses: %w", err)
	}
	sortStatuses(recs)
	for _, r := range recs {
		out[r.JobID] = append(out[r.JobID], r)
	}
	return out, nil
}

// sortStatuses puts reports in the order they happened (compareStatus).
func sortStatuses(recs []statusRecord) { slices.SortFunc(recs, compareStatus) }

// compareStatus orders reports as they happened: by time, then by attempt,
// then by outcome, so that of two reports at the same instant a final one
// (sent, failed) comes after a deferral.
func compareStatus(a, b statusRecord) int {
	return cmp.Or(
		a.At.Compare(b.At),
		cmp.Compare(a.Attempt, b.Attempt),
		cmp.Compare(statusRank(a.Status), statusRank(b.Status)),
		cmp.Compare(a.ID, b.ID),
	)
}

func statusRank(s string) int {
	switch s {
	case events.MailSent:
		return 3
	case events.MailFailed:
		return 2
	case events.MailDeferred:
		return 1
	}
	return 0
}

// latest sums up an email's reports: its current status ("queued" while the
// mailer has not reported), when that was reported, and the highest delivery
// attempt seen. recs must be sorted with sortStatuses.
func latest(recs []statusRecord, created time.Time) (status string, at time.Time, attempts int) {
	if len(recs) == 0 {
		return events.MailQueued, created, 0
	}
	last := recs[len(recs)-1]
	for _, r := range recs {
		attempts = max(attempts, r.Attempt)
	}
	return last.Status, last.At, attempts
}

// The email log is read a page at a time, newest first (logOrder), from a
// cursor: the creation time and id of the last email of the previous page.
var logOrder = bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: 1}}

// noBodies leaves the rendered content out of list reads.
var noBodies = bson.D{{Key: "text", Value: 0}, {Key: "html", Value: 0}, {Key: "attachments", Value: 0}, {Key: "content", Value: 0}}

// logCursor is where a page of the log ends.
type logCursor struct {
	At time.Time
	ID string
}

func cursorOf(r emailRecord) logCursor { return logCursor{At: r.CreatedAt, ID: r.ID} }

// String encodes the cursor for a URL.
func (c logCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.At.UnixMilli(), 10) + ":" + c.ID))
}

// parseCursor decodes a cursor made by String.
func parseCursor(s string) (logCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return logCursor{}, errors.New("not a cursor this service gave")
	}
	ms, id, ok := strings.Cut(string(raw), ":")
	at, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || id == "" {
		return logCursor{}, errors.New("not a cursor this service gave")
	}
	return logCursor{At: time.UnixMilli(at).UTC(), ID: id}, nil
}

// logFilter selects emails of one event.
type logFilter struct {
	EventID string
	To      string // the address, any case
	Kind    string
	After   *logCursor
}

func (f logFilter) query() bson.D {
	q := bson.D{{Key: "event_id", Value: f.EventID}}
	if f.To != "" {
		q = append(q, bson.E{Key: "to", Value: bson.D{{Key: "$regex", Value: "^" + regexp.QuoteMeta(f.To) + "$"}, {Key: "$options", Value: "i"}}})
	}
	if f.Kind != "" {
		q = append(q, bson.E{Key: "kind", Value: f.Kind})
	}
	if f.After != nil {
		at := f.After.At
		q = append(q, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: at}}}},
			bson.D{{Key: "created_at", Value: at}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: f.After.ID}}}},
		}})
	}
	return q
}

// scan reads at most limit of the emails f selects, without their bodies,
// in log order, and hands them to fn chunk by chunk (at most chunk at a
// time, in a slice fn may keep) until fn returns false. Only one chunk is
// held at a time, however big the event's log.
func (s *emailStore) scan(ctx context.Context, f logFilter, limit int64, chunk int, fn func([]emailRecord) (bool, error)) error {
	opts := options.Find().SetSort(logOrder).SetProjection(noBodies).SetLimit(limit).SetBatchSize(int32(chunk))
	cur, err := s.emails.Find(ctx, f.query(), opts)
	if err != nil {
		return fmt.Errorf("email log event[%s]: %w", f.EventID, err)
	}
	defer cur.Close(ctx)
	batch := make([]emailRecord, 0, chunk)
	for cur.Next(ctx) {
		var r emailRecord
		if err := cur.Decode(&r); err != nil {
			return fmt.Errorf("email log event[%s]: %w", f.EventID, err)
		}
		if batch = append(batch, r); len(batch) < chunk {
			continue
		}
		more, err := fn(batch)
		if err != nil || !more {
			return err
		}
		batch = make([]emailRecord, 0, chunk)
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("email log event[%s]: %w", f.EventID, err)
	}
	if len(batch) > 0 {
		_, err = fn(batch)
	}
	return err
}

// find returns the records with the given ids (those that exist), with or
// without their bodies.
func (s *emailStore) find(ctx context.Context, ids []string, bodies bool) ([]emailRecord, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	opts := options.Find().SetSort(logOrder)
	if !bodies {
		opts.SetProjection(noBodies)
	}
	cur, err := s.emails.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, opts)
	if err != nil {
		return nil, fmt.Errorf("emails: %w", err)
	}
	var out []emailRecord
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("emails: %w", err)
	}
	return out, nil
}

// chains returns every email of the resend chains that start at roots
// (the first emails and their resends), without bodies, by root.
func (s *emailStore) chains(ctx context.Context, roots []string) (map[string][]emailRecord, error) {
	out := map[string][]emailRecord{}
	if len(roots) == 0 {
		return out, nil
	}
	in := bson.D{{Key: "$in", Value: roots}}
	filter := bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "_id", Value: in}}, bson.D{{Key: "resend_of", Value: in}}}}}
	cur, err := s.emails.Find(ctx, filter, options.Find().SetProjection(noBodies))
	if err != nil {
		return nil, fmt.Errorf("resend chains: %w", err)
	}
	var recs []emailRecord
	if err := cur.All(ctx, &recs); err != nil {
		return nil, fmt.Errorf("resend chains: %w", err)
	}
	for _, r := range recs {
		out[r.root()] = append(out[r.root()], r)
	}
	for _, c := range out {
		slices.SortFunc(c, func(a, b emailRecord) int { return cmp.Compare(a.Resend, b.Resend) })
	}
	return out, nil
}

// deadLetter is an email the mailer gave up on and that has not been sent
// again since: the newest of its resend chain, failed.
type deadLetter struct {
	rec      emailRecord // without bodies
	failed   statusRecord
	attempts int
	next     int // the number its replay gets in the chain
}

// deadLetters returns the event's dead letters, the most recently failed
// first. They are found from the mailer's failed reports, few even in a big
// event, so the event's whole log is never read.
func (s *emailStore) deadLetters(ctx context.Context, eventID string) ([]deadLetter, error) {
	filter := bson.D{{Key: "event_id", Value: eventID}, {Key: "status", Value: events.MailFailed}}
	cur, err := s.statuses.Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "job_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("dead letters event[%s]: %w", eventID, err)
	}
	var reports []statusRecord
	if err := cur.All(ctx, &reports); err != nil {
		return nil, fmt.Errorf("dead letters event[%s]: %w", eventID, err)
	}
	var ids []string
	reported := map[string]bool{}
	for _, r := range reports {
		if !reported[r.JobID] {
			reported[r.JobID] = true
			ids = append(ids, r.JobID)
		}
	}
	statuses, err := s.statusesOf(ctx, ids...)
	if err != nil {
		return nil, err
	}
	failed := map[string]bool{}
	for _, id := range ids {
		if st, _, _ := latest(statuses[id], time.Time{}); st == events.MailFailed {
			failed[id] = true
		}
	}
	recs, err := s.find(ctx, slices.Collect(maps.Keys(failed)), false)
	if err != nil {
		return nil, err
	}
	var roots []string
	rooted := map[string]bool{}
	for _, r := range recs {
		if r.EventID == eventID && !rooted[r.root()] {
			rooted[r.root()] = true
			roots = append(roots, r.root())
		}
	}
	chains, err := s.chains(ctx, roots)
	if err != nil {
		return nil, err
	}
	var out []deadLetter
	for _, root := range roots {
		chain := chains[root]
		if len(chain) == 0 {
			continue
		}
		newest := chain[len(chain)-1]
		if !failed[newest.ID] {
			continue // sent again since
		}
		recs := statuses[newest.ID]
		_, _, attempts := latest(recs, newest.CreatedAt)
		out = append(out, deadLetter{rec: newest, failed: recs[len(recs)-1], attempts: attempts, next: newest.Resend + 1})
	}
	slices.SortFunc(out, func(a, b deadLetter) int {
		return cmp.Or(b.failed.At.Compare(a.failed.At), cmp.Compare(a.rec.ID, b.rec.ID))
	})
	return out, nil
}

var addressRE = regexp.MustCompile(`[^\s<>"'(),;:\[\]]+@[^\s<>"'(),;:\[\]]+`)

// redact replaces email addresses in an SMTP reply. The mailer does so
// before it reports; the log does it again, so that no report, old or from
// another mailer, shows an address.
func redact(s string) string {
	return addressRE.ReplaceAllString(s, "<address>")
}
