package events_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/plenaryhq/plenary/pkg/events"
)

func TestNewParseRoundTrip(t *testing.T) {
	reg := events.Registration{
		ID: "01JREG", Version: 2, EventID: "01JEVT", Status: events.StatusConfirmed,
		Mode: events.ModeOnline, Name: "Ada", Email: "ada@example.org", Locale: "en",
		ManageURL: "https://plenary.test/r/m", JoinURL: "https://plenary.test/r/j",
		Event: events.Event{ID: "01JEVT", Slug: "gophercon", Locales: []string{"en", "fr"},
			Capacity: events.Capacity{InPerson: 10}, StartsAt: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)},
	}
	before := time.Now().UTC()
	env, err := events.New("plenary/registration", events.RegistrationConfirmed, "01JREG", reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ulid.ParseStrict(env.ID); err != nil {
		t.Errorf("id %q is not a ULID: %v", env.ID, err)
	}
	if env.Time.Before(before.Add(-time.Second)) || env.Time.Location() != time.UTC {
		t.Errorf("time = %v, want now in UTC", env.Time)
	}

	body, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.Parse(body)
	if err != nil {
		t.Fatalf("Parse(Marshal(env)): %v", err)
	}
	if got.ID != env.ID || got.Type != events.RegistrationConfirmed || got.Source != "plenary/registration" ||
		got.Subject != "01JREG" || got.SpecVersion != events.SpecVersion ||
		got.DataContentType != "application/json" || !got.Time.Equal(env.Time) {
		t.Errorf("Parse = %+v, want the attributes of %+v", got, env)
	}
	var data events.Registration
	if err := got.Decode(&data); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(data, reg) {
		t.Errorf("Decode = %+v, want %+v", data, reg)
	}
}

func TestNewIDsAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := events.NewID()
		if seen[id] {
			t.Fatalf("NewID repeated %s", id)
		}
		seen[id] = true
	}
}

func TestNewWithIDKeepsTheID(t *testing.T) {
	env, err := events.NewWithID("job-1", "plenary/notification", events.MailSend, "", events.MailJob{ID: "job-1"})
	if err != nil {
		t.Fatal(err)
	}
	if env.ID != "job-1" {
		t.Errorf("ID = %q, want job-1", env.ID)
	}
}

func TestNewRejectsUnmarshalableData(t *testing.T) {
	if _, err := events.New("src", events.MailSend, "", make(chan int)); err == nil {
		t.Fatal("New with a channel as data must fail")
	}
}

func TestDecodeWrongShape(t *testing.T) {
	env, err := events.New("src", events.MailSend, "", []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	var job events.MailJob
	err = env.Decode(&job)
	if err == nil || !strings.Contains(err.Error(), env.ID) {
		t.Fatalf("Decode array into struct = %v, want an error naming the message id", err)
	}
}

func TestParseRejects(t *testing.T) {
	valid := `"specversion":"1.0","id":"01J","type":"registration.v1.registration.confirmed","source":"src"`
	tests := map[string]string{
		"not json":           `registration confirmed`,
		"json array":         `[1,2]`,
		"empty object":       `{}`,
		"truncated":          `{` + valid,
		"missing id":         `{"specversion":"1.0","type":"t","source":"src"}`,
		"empty id":           `{"specversion":"1.0","id":"","type":"t","source":"src"}`,
		"missing type":       `{"specversion":"1.0","id":"01J","source":"src"}`,
		"missing source":     `{"specversion":"1.0","id":"01J","type":"t"}`,
		"missing version":    `{"id":"01J","type":"t","source":"src"}`,
		"other spec version": `{"specversion":"0.3","id":"01J","type":"t","source":"src"}`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := events.Parse([]byte(body)); err == nil {
				t.Fatalf("Parse(%s) succeeded, want an error", body)
			}
		})
	}
	// The same attributes in a complete envelope are accepted, so the cases
	// above fail for the reason they name.
	if _, err := events.Parse([]byte(`{` + valid + `,"data":{}}`)); err != nil {
		t.Fatalf("Parse(valid) = %v", err)
	}
}

func TestStreams(t *testing.T) {
	streams := events.Streams(1)
	want := map[string]struct {
		subject   string
		retention jetstream.RetentionPolicy
	}{
		events.StreamRegistration: {"registration.v1.>", jetstream.LimitsPolicy},
		events.StreamAgenda:       {"agenda.v1.>", jetstream.LimitsPolicy},
		events.StreamMail:         {events.MailSend, jetstream.LimitsPolicy},
		events.StreamMailStatus:   {events.AllMailStatus, jetstream.LimitsPolicy},
		events.StreamDLQ:          {"dlq.>", jetstream.LimitsPolicy},
		events.StreamRequests:     {"registration-requests.v1.>", jetstream.LimitsPolicy},
		events.StreamMailSent:     {"mail-sent.v1.>", jetstream.LimitsPolicy},
	}
	if len(streams) != len(want) {
		t.Errorf("Streams(1) has %d streams, want %d", len(streams), len(want))
	}
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			cfg, ok := streams[name]
			if !ok {
				t.Fatalf("stream %s missing", name)
			}
			if cfg.Name != name {
				t.Errorf("Name = %q", cfg.Name)
			}
			if len(cfg.Subjects) != 1 || cfg.Subjects[0] != w.subject {
				t.Errorf("Subjects = %v, want [%s]", cfg.Subjects, w.subject)
			}
			if cfg.Retention != w.retention {
				t.Errorf("Retention = %v, want %v", cfg.Retention, w.retention)
			}
			if cfg.Replicas != 1 || cfg.Storage != jetstream.FileStorage {
				t.Errorf("Replicas = %d, Storage = %v; want 1, file", cfg.Replicas, cfg.Storage)
			}
			// Requests are deduplicated for an Idempotency-Key's lifetime and
			// kept a week (the decider reads any it missed from the stream).
			if name == events.StreamRequests {
				if cfg.Duplicates != events.RequestWindow || cfg.MaxAge != 7*24*time.Hour || !cfg.AllowAtomicPublish {
					t.Errorf("Duplicates %v, MaxAge %v, atomic %v", cfg.Duplicates, cfg.MaxAge, cfg.AllowAtomicPublish)
				}
				return
			}
			if cfg.Duplicates != events.DuplicateWindow {
				t.Errorf("Duplicates = %v, want %v", cfg.Duplicates, events.DuplicateWindow)
			}
			// Mail jobs are kept a week (longer than a job is retried, so a
			// failed one can be replayed); events 30 days.
			wantAge := 30 * 24 * time.Hour
			switch name {
			case events.StreamMail:
				wantAge = events.MailRetention
			case events.StreamMailSent:
				// A sent record must outlive every redelivery of its job, and
				// no job is redelivered once MAIL has dropped it.
				wantAge = events.MailRetention + 24*time.Hour
			}
			if cfg.MaxAge != wantAge {
				t.Errorf("MaxAge = %v, want %v", cfg.MaxAge, wantAge)
			}
			// Only the sent ledger skips the fsync per write, and only on a
			// single server (async persistence is refused on replicas).
			wantPersist := jetstream.DefaultPersistMode
			if name == events.StreamMailSent {
				wantPersist = jetstream.AsyncPersistMode
			}
			if cfg.PersistMode != wantPersist {
				t.Errorf("PersistMode = %v, want %v", cfg.PersistMode, wantPersist)
			}
			atomic := name == events.StreamRegistration || name == events.StreamMail || name == events.StreamMailStatus
			if cfg.AllowAtomicPublish != atomic {
				t.Errorf("AllowAtomicPublish = %v, want %v", cfg.AllowAtomicPublish, atomic)
			}
		})
	}
}

func TestStreamsReplicas(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, 1}, {-1, 1}, {1, 1}, {3, 3}} {
		for name, cfg := range events.Streams(tc.in) {
			if cfg.Replicas != tc.want {
				t.Errorf("Streams(%d)[%s].Replicas = %d, want %d", tc.in, name, cfg.Replicas, tc.want)
			}
			if cfg.Replicas > 1 && cfg.PersistMode != jetstream.DefaultPersistMode {
				t.Errorf("Streams(%d)[%s].PersistMode = %v: NATS refuses async persistence on replicated streams", tc.in, name, cfg.PersistMode)
			}
		}
	}
}

// Every event type is a subject, and a publish to a subject no stream holds
// is lost: each type must land in exactly one stream.
func TestEveryTypeHasOneStream(t *testing.T) {
	types := []string{
		events.EventCreated, events.EventUpdated,
		events.RegistrationReceived, events.RegistrationConfirmed, events.RegistrationWaitlisted,
		events.RegistrationPending, events.RegistrationRejected, events.RegistrationCancelled,
		events.RegistrationPromoted, events.RegistrationUpdated, events.RegistrationDuplicateAttempt,
		events.RegistrationLinkRequested, events.RegistrationErased, events.AttendanceJoined,
		events.AgendaReleasePublished,
		events.MailSend, events.MailStatusSent, events.MailStatusDeferred, events.MailStatusFailed,
		events.DLQSubject(events.StreamMail, "mailer"),
	}
	streams := events.Streams(1)
	for _, typ := range types {
		var in []string
		for name, cfg := range streams {
			for _, filter := range cfg.Subjects {
				if subjectMatches(filter, typ) {
					in = append(in, name)
				}
			}
		}
		if len(in) != 1 {
			t.Errorf("%s is held by streams %v, want exactly one", typ, in)
		}
	}
}

func TestConsumerFiltersMatchTheirTypes(t *testing.T) {
	tests := []struct {
		filter string
		match  []string
		miss   []string
	}{
		{events.AllEvents, []string{events.EventCreated, events.EventUpdated}, []string{events.RegistrationConfirmed}},
		{events.AllRegistrations, []string{events.RegistrationConfirmed, events.RegistrationErased}, []string{events.EventCreated, events.AttendanceJoined}},
		{events.AllMailStatus, []string{events.MailStatusSent, events.MailStatusFailed}, []string{events.MailSend}},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			for _, s := range tc.match {
				if !subjectMatches(tc.filter, s) {
					t.Errorf("%s does not match %s", tc.filter, s)
				}
			}
			for _, s := range tc.miss {
				if subjectMatches(tc.filter, s) {
					t.Errorf("%s matches %s", tc.filter, s)
				}
			}
		})
	}
}

func TestDLQSubject(t *testing.T) {
	if got := events.DLQSubject(events.StreamMail, "mailer"); got != "dlq.MAIL.mailer" {
		t.Errorf("DLQSubject = %q, want dlq.MAIL.mailer", got)
	}
}

// subjectMatches reports whether a NATS subject matches filter, with the
// wildcards * (one token) and > (the rest, at least one token).
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

func TestEnvelopeKeepsHTMLAsIs(t *testing.T) {
	html := `<p>Room <b>B</b> &amp; <a href="https://x.test/r/a?b=1&c=2">link</a></p>`
	env, err := events.New("plenary/test", events.MailSend, "r1", events.MailJob{ID: "j1", To: "a@example.org", HTML: html})
	if err != nil {
		t.Fatal(err)
	}
	body, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(`<p>Room <b>B</b> &amp;`)) || bytes.Contains(body, []byte(`\u003c`)) || bytes.HasSuffix(body, []byte("\n")) {
		t.Errorf("body %s: want the HTML as it is, no \\u escapes, no trailing newline", body)
	}
	got, err := events.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	var job events.MailJob
	if err := got.Decode(&job); err != nil || job.HTML != html {
		t.Errorf("round trip: %q (%v), want %q", job.HTML, err, html)
	}
}

// Parse reads the attributes before "data" and leaves the data to Decode
// (one pass); other shapes are read whole. Either way the attributes and
// the data come out the same.
func TestParseWhereverTheDataIs(t *testing.T) {
	const trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	attrs := `"specversion":"1.0","id":"01J","type":"t","source":"src","traceparent":"` + trace + `"`
	html := "<p>" + strings.Repeat("x", 5<<10) + "</p>" // large enough to be read head first
	data := `{"id":"j1","to":"a@example.org","html":"` + html + `"}`
	bodies := map[string]string{
		"data last":                 `{` + attrs + `,"data":` + data + `}`,
		"data first":                `{"data":` + data + `,` + attrs + `}`,
		"data between":              `{"specversion":"1.0","id":"01J","data":` + data + `,"type":"t","source":"src","traceparent":"` + trace + `"}`,
		"spaces and an extension":   "{ \"ext\" : {\"a\":[1,2]} ,\n" + strings.ReplaceAll(attrs, ":", " : ") + " , \"data\" :\n" + data + " }\n",
		"keys in other letter case": `{"SpecVersion":"1.0","ID":"01J","Type":"t","Source":"src","TraceParent":"` + trace + `","Data":` + data + `}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			env, err := events.Parse([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if env.SpecVersion != "1.0" || env.ID != "01J" || env.Type != "t" || env.Source != "src" || env.TraceParent != trace {
				t.Errorf("attributes %+v", env)
			}
			var job events.MailJob
			if err := env.Decode(&job); err != nil || job.ID != "j1" || job.To != "a@example.org" || job.HTML != html {
				t.Errorf("Decode = %+v, %v", job, err)
			}
			// A parsed envelope marshals with its data (a republish).
			again, err := env.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			env2, err := events.Parse(again)
			var job2 events.MailJob
			if err != nil || env2.Decode(&job2) != nil || !reflect.DeepEqual(job2, job) {
				t.Errorf("Marshal(Parse(body)) = %s, want the same data", again)
			}
		})
	}
}

// Data Parse did not read is still checked: Decode refuses a malformed
// message as Parse did before.
func TestDecodeRefusesWhatParseLeftUnread(t *testing.T) {
	// An extension makes each message large enough to be read head first.
	attrs := `"ext":"` + strings.Repeat("x", 5<<10) + `","specversion":"1.0","id":"01J","type":"t","source":"src"`
	for name, body := range map[string]string{
		"malformed data":   `{` + attrs + `,"data":{"id":}}`,
		"unclosed":         `{` + attrs + `,"data":{"id":"j1"}`,
		"trailing garbage": `{` + attrs + `,"data":{"id":"j1"}} x`,
		"no data":          `{` + attrs + `}`,
	} {
		t.Run(name, func(t *testing.T) {
			env, err := events.Parse([]byte(body))
			if err != nil {
				return // refused here: as good
			}
			var job events.MailJob
			if err := env.Decode(&job); err == nil {
				t.Fatalf("Parse and Decode(%s) = %+v, want an error", body, job)
			}
		})
	}
}

// BenchmarkParseDecode reads a mail job the size of a real confirmation
// (16 KB, mostly HTML) and a registration outcome as a consumer does.
func BenchmarkParseDecode(b *testing.B) {
	html := strings.Repeat(`<p>Dear participant, your place at <b>the roundtable</b> is confirmed.</p>`, 170)
	job := events.MailJob{ID: "j1", To: "a@example.org", HTML: html, Text: html[:3000]}
	reg := events.Registration{ID: "01JREG", EventID: "01JEVT", Status: events.StatusConfirmed, Mode: events.ModeOnline,
		Name: "Ada Lovelace", Email: "ada@example.org", Locale: "en", ManageURL: "https://plenary.test/r/m", JoinURL: "https://plenary.test/r/j",
		Event: events.Event{ID: "01JEVT", Slug: "roundtable", Title: "Roundtable", Locales: []string{"en", "fr"}}}
	for name, data := range map[string]any{"mail job": job, "registration": reg} {
		b.Run(name, func(b *testing.B) {
			env, err := events.New("plenary/test", events.MailSend, "r1", data)
			if err != nil {
				b.Fatal(err)
			}
			body, err := env.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				got, err := events.Parse(body)
				if err != nil {
					b.Fatal(err)
				}
				v := reflect.New(reflect.TypeOf(data)).Interface()
				if err := got.Decode(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Decode wants a pointer however the message was read.
func TestDecodeWantsAPointer(t *testing.T) {
	for _, size := range []int{10, 5 << 10} { // read whole; head first
		env, err := events.New("src", events.MailSend, "", events.MailJob{ID: "j1", HTML: strings.Repeat("x", size)})
		if err != nil {
			t.Fatal(err)
		}
		body, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := events.Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		var job events.MailJob
		if err := got.Decode(job); err == nil {
			t.Errorf("%d bytes: Decode(a struct, not a pointer) succeeded", len(body))
		}
		if err := got.Decode((*events.MailJob)(nil)); err == nil {
			t.Errorf("%d bytes: Decode(nil pointer) succeeded", len(body))
		}
	}
}
