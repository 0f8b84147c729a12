package notification

import (
	"bytes"
	"compress/gzip"
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/testkit"
)

// An email record's content is stored compressed and read back whole;
// records stored before (content in plain fields, or gzip-compressed)
// still read.
func TestEmailContentStoredCompressed(t *testing.T) {
	ctx := context.Background()
	coll := testkit.Mongo(t).Collection(emailsCollection)
	r := emailRecord{
		ID: "job-1", EventID: "evt", RegistrationID: "reg", Kind: kindConfirmation, To: "ada@example.org",
		Subject: "Confirmed", Text: "Dear Ada Lovelace, you are confirmed.", HTML: "<p>Dear Ada Lovelace</p>",
		Attachments: []attachment{{Name: "event.ics", ContentType: "text/calendar", Data: []byte("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")}},
		CreatedAt:   time.Now().UTC().Truncate(time.Millisecond),
	}
	if _, err := coll.InsertOne(ctx, r); err != nil {
		t.Fatal(err)
	}
	raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: r.ID}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("Lovelace")) || bytes.Contains(raw, []byte("VCALENDAR")) {
		t.Fatalf("content stored uncompressed: %s", raw)
	}
	var got emailRecord
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: r.ID}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Text != r.Text || got.HTML != r.HTML || len(got.Attachments) != 1 ||
		!bytes.Equal(got.Attachments[0].Data, r.Attachments[0].Data) || got.To != r.To || !got.CreatedAt.Equal(r.CreatedAt) {
		t.Fatalf("read back %+v, want %+v", got, r)
	}
	// Listing without bodies leaves the content out.
	var listed emailRecord
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: r.ID}}, options.FindOne().SetProjection(noBodies)).Decode(&listed); err != nil {
		t.Fatal(err)
	}
	if listed.Text != "" || listed.HTML != "" || listed.Attachments != nil || listed.Subject != r.Subject {
		t.Fatalf("listed %+v, want no content", listed)
	}

	// readBack stores a record as an older version wrote it and reads it.
	readBack := func(id string, fields ...bson.E) emailRecord {
		t.Helper()
		doc := append(bson.D{{Key: "_id", Value: id}, {Key: "event_id", Value: "evt"}, {Key: "kind", Value: kindConfirmation},
			{Key: "to", Value: id + "@example.org"}, {Key: "subject", Value: "Old"}, {Key: "created_at", Value: time.Now().UTC()}}, fields...)
		if _, err := coll.InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
		var got emailRecord
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	legacy := readBack("job-old", bson.E{Key: "text", Value: "plain text"}, bson.E{Key: "html", Value: "<p>plain</p>"})
	if legacy.Text != "plain text" || legacy.HTML != "<p>plain</p>" {
		t.Fatalf("a record stored before: %+v", legacy)
	}

	content, err := bson.Marshal(emailContent{Text: "gzip text", HTML: "<p>gzip</p>"})
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	gzipped := readBack("job-gzip", bson.E{Key: "content", Value: gz.Bytes()})
	if gzipped.Text != "gzip text" || gzipped.HTML != "<p>gzip</p>" {
		t.Fatalf("a gzip record stored before: %+v", gzipped)
	}
}

// An event notification never kept a message of is still known from the
// copy that participant versions stored before the events replica took
// the copies.
func TestEventFromParticipantsStoredBefore(t *testing.T) {
	ctx := context.Background()
	db := testkit.Mongo(t)
	n := &notifier{events: newEventReplica(db, testkit.Logger(t)), people: newParticipants(db, newEmailStore(db))}
	if _, err := n.eventOf(ctx, "evt-old"); err == nil {
		t.Fatal("an event nobody stored was found")
	}
	old := bson.D{{Key: "_id", Value: "reg-1:1"}, {Key: "registration_id", Value: "reg-1"}, {Key: "event_id", Value: "evt-old"},
		{Key: "version", Value: 1}, {Key: "event", Value: bson.D{{Key: "id", Value: "evt-old"}, {Key: "title", Value: "Roundtable"}, {Key: "version", Value: 2}}}}
	if _, err := db.Collection(participantsCollection).InsertOne(ctx, old); err != nil {
		t.Fatal(err)
	}
	ev, err := n.eventOf(ctx, "evt-old")
	if err != nil || ev.Title != "Roundtable" {
		t.Fatalf("event from the old participant copy: %+v, %v", ev, err)
	}
}
