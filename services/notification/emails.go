package notification

import (
	"cmp"
	"context"
	"fmt"
	"slices"
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
		store.Index{Collection: statusCollection, Keys: bson.D{{Key: "job_id", Value: 1}}},
	)
}

// claim inserts the record. store.ErrDuplicate means the email was claimed
// before: by an earlier delivery of the same message, or by a replay.
func (s *emailStore) claim(ctx context.Context, r emailRecord) error {
	if _, err := s.emails.InsertOne(ctx, r); err != nil {
		return fmt.Errorf("claim email job[%s]: %w", r.ID, store.Translate(err))
	}
	return nil
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

// list returns the event's emails, newest first, without their bodies.
func (s *emailStore) list(ctx context.Context, eventID string) ([]emailRecord, error) {
	opts := options.Find().
		SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: 1}}).
		SetProjection(bson.D{{Key: "text", Value: 0}, {Key: "html", Value: 0}, {Key: "attachments", Value: 0}})
	cur, err := s.emails.Find(ctx, bson.D{{Key: "event_id", Value: eventID}}, opts)
	if err != nil {
		return nil, fmt.Errorf("list emails event[%s]: %w", eventID, err)
	}
	var out []emailRecord
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list emails event[%s]: %w", eventID, err)
	}
	return out, nil
}

// addStatuses records status reports; a repeat of the same report is fine.
func (s *emailStore) addStatuses(ctx context.Context, recs []statusRecord) error {
	if len(recs) == 0 {
		return nil
	}
	docs := make([]any, len(recs))
	for i := range recs {
		docs[i] = recs[i]
	}
	_, err := s.statuses.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err != nil && !onlyDuplicates(err) {
		return fmt.Errorf("record %d statuses: %w", len(recs), store.Translate(err))
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
