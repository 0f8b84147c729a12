package notification

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// An email record keeps what the email says — text, HTML, attachments —
// compressed in one binary field (content): an email log record is mostly
// that, and FerretDB encodes every document to SQLite's JSON, so storing
// ~12 KB of rendered text made its InsertMany the slowest step of a
// fan-out (measured: ~1,600 records/s as written against ~9,000/s
// compressed, compression included). Records written before are read as
// they are.

// emailDoc is emailRecord without its BSON methods.
type emailDoc emailRecord

// storedEmail is an email record as stored.
type storedEmail struct {
	Doc     emailDoc `bson:",inline"`
	Content []byte   `bson:"content,omitempty"`
}

// emailContent is what content holds, before compression.
type emailContent struct {
	Text        string       `bson:"text,omitempty"`
	HTML        string       `bson:"html,omitempty"`
	Attachments []attachment `bson:"attachments,omitempty"`
}

// MarshalBSON stores the record with its content compressed.
func (r emailRecord) MarshalBSON() ([]byte, error) {
	doc := emailDoc(r)
	doc.Text, doc.HTML, doc.Attachments = "", "", nil
	s := storedEmail{Doc: doc}
	if r.Text != "" || r.HTML != "" || len(r.Attachments) > 0 {
		raw, err := bson.Marshal(emailContent{Text: r.Text, HTML: r.HTML, Attachments: r.Attachments})
		if err != nil {
			return nil, err
		}
		if s.Content, err = compress(raw); err != nil {
			return nil, err
		}
	}
	return bson.Marshal(s)
}

// UnmarshalBSON reads a record, compressed or not (older records).
func (r *emailRecord) UnmarshalBSON(data []byte) error {
	var s storedEmail
	if err := bson.Unmarshal(data, &s); err != nil {
		return err
	}
	*r = emailRecord(s.Doc)
	if len(s.Content) == 0 {
		return nil
	}
	raw, err := decompress(s.Content)
	if err != nil {
		return fmt.Errorf("email[%s]: content: %w", r.ID, err)
	}
	var c emailContent
	if err := bson.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("email[%s]: content: %w", r.ID, err)
	}
	r.Text, r.HTML, r.Attachments = c.Text, c.HTML, c.Attachments
	return nil
}

// A gzip writer allocates about a megabyte: they are reused.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

func compress(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(w)
	w.Reset(&buf)
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decompress(z []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
