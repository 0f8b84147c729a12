package notification

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

const adminToken = "test-admin-token"

// harness runs the notification service against embedded NATS and FerretDB,
// with a bus of its own to play the registration service and the mailer.
type harness struct {
	t    *testing.T
	bus  *bus.Bus
	base string
	cfg  Config
}

// testConfig is the service's configuration in the tests: the test's own
// database, NATS at natsURL, the admin token and a link key.
func testConfig(t *testing.T, natsURL string) Config {
	return Config{
		Common: service.Common{
			MongoURI:      testkit.MongoURI(t),
			MongoDatabase: testkit.DatabaseName(t),
			NATSURL:       natsURL,
			ConnectWait:   5 * time.Second,
		},
		AdminTokens: []string{adminToken},
		LinkKey:     "test-link-key-0123456789abcdef-0123456789",
	}
}

func start(t *testing.T) *harness {
	t.Helper()
	nats := testkit.StartNATS(t)
	ln, base := testkit.Listen(t)
	h := &harness{t: t, base: base, cfg: testConfig(t, nats.URL)}
	h.cfg.Listener = ln
	testkit.Serve(t, func(ctx context.Context) error { return Run(ctx, h.cfg, testkit.Logger(t)) })

	h.bus = nats.Bus(t)
	testkit.Eventually(t, 10*time.Second, func() error {
		status, _ := h.get("/healthz", "")
		if status != http.StatusOK {
			return fmt.Errorf("/healthz: %d", status)
		}
		return nil
	})
	return h
}

// publish sends reg as a fresh message of type typ, as the registration
// service's outbox would.
func (h *harness) publish(typ string, reg events.Registration) events.Envelope {
	h.t.Helper()
	env, err := events.New("plenary/registration", typ, reg.ID, reg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishEnvelope(env)
	return env
}

func (h *harness) publishEnvelope(env events.Envelope) {
	h.t.Helper()
	if err := h.bus.PublishEvent(context.Background(), env); err != nil {
		h.t.Fatal(err)
	}
}

// settled waits until the notification consumer has finished with every
// message on the REGISTRATION stream.
func (h *harness) settled() {
	h.t.Helper()
	ctx := context.Background()
	testkit.Eventually(h.t, 10*time.Second, func() error {
		s, err := h.bus.JS.Stream(ctx, events.StreamRegistration)
		if err != nil {
			return err
		}
		si, err := s.Info(ctx)
		if err != nil {
			return err
		}
		c, err := s.Consumer(ctx, registrationsConsumer)
		if err != nil {
			return err
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if ci.AckFloor.Stream < si.State.LastSeq || ci.NumAckPending > 0 || ci.NumPending > 0 {
			return fmt.Errorf("consumer at %d of %d (%d in flight)", ci.AckFloor.Stream, si.State.LastSeq, ci.NumAckPending)
		}
		return nil
	})
}

// jobs returns the mail jobs on the MAIL stream, checking that each was
// published with its id as Nats-Msg-Id.
func (h *harness) jobs(stream string) []events.MailJob {
	h.t.Helper()
	var out []events.MailJob
	for _, msg := range h.messages(stream) {
		env, err := events.Parse(msg.Data)
		if err != nil {
			h.t.Fatal(err)
		}
		var job events.MailJob
		if err := env.Decode(&job); err != nil {
			h.t.Fatal(err)
		}
		if got := msg.Header.Get(jetstream.MsgIDHeader); got != job.ID || env.ID != job.ID {
			h.t.Errorf("job %s published with Nats-Msg-Id %q, envelope id %q", job.ID, got, env.ID)
		}
		out = append(out, job)
	}
	return out
}

// messages reads every message stored on stream, without consuming them.
func (h *harness) messages(stream string) []*jetstream.RawStreamMsg {
	h.t.Helper()
	ctx := context.Background()
	s, err := h.bus.JS.Stream(ctx, stream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, msg)
	}
	return out
}

// waitJobs waits for exactly n jobs on the MAIL stream and returns them.
func (h *harness) waitJobs(n int) []events.MailJob {
	h.t.Helper()
	var jobs []events.MailJob
	testkit.Eventually(h.t, 10*time.Second, func() error {
		if jobs = h.jobs(events.StreamMail); len(jobs) < n {
			return fmt.Errorf("%d of %d mail jobs", len(jobs), n)
		}
		return nil
	})
	h.settled()
	if jobs = h.jobs(events.StreamMail); len(jobs) != n {
		h.t.Fatalf("%d mail jobs, want %d: %+v", len(jobs), n, jobIDs(jobs))
	}
	return jobs
}

func jobIDs(jobs []events.MailJob) []string {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return ids
}

// get requests path with token (none if empty) and returns the status and
// the body.
func (h *harness) get(path, token string) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.base+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, body
}

// getJSON requests path as an organizer and decodes the 200 answer into v.
func (h *harness) getJSON(path string, v any) {
	h.t.Helper()
	status, body := h.get(path, adminToken)
	if status != http.StatusOK {
		h.t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		h.t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// db connects to the service's database, to set up what a crash leaves.
func (h *harness) db() *mongo.Database {
	h.t.Helper()
	db, err := store.Connect(context.Background(), h.cfg.MongoURI, h.cfg.MongoDatabase, 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { store.Disconnect(db) })
	return db
}

// registration is a confirmed online registration for a one-day event in
// Vienna, by an attendee in New York.
func registration(id string) events.Registration {
	return events.Registration{
		ID: id, Version: 1, EventID: "evt-" + id, Status: events.StatusConfirmed, Mode: events.ModeOnline,
		Name: "Ada Lovelace", Email: "ada-" + id + "@example.org", Locale: "en", Timezone: "America/New_York",
		ManageURL: "https://plenary.test/r/manage-" + id, JoinURL: "https://plenary.test/j/join-" + id,
		Event: events.Event{
			ID: "evt-" + id, Version: 3, Slug: "roundtable", Title: "Vienna Roundtable", Timezone: "Europe/Vienna",
			StartsAt: time.Date(2020, 11, 9, 8, 0, 0, 0, time.UTC), EndsAt: time.Date(2020, 11, 9, 16, 30, 0, 0, time.UTC),
			Venue:     events.Venue{Name: "Palais Ferstel", Address: "Strauchgasse 4, 1010 Wien"},
			PublicURL: "https://plenary.test/e/roundtable",
		},
	}
}
