package registration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// perRequestHeaders are the response headers that change with every
// request whoever sends it: the date, the request id, and the per-IP rate
// limit's count and reset time (the per-address limiter's headers are
// overwritten by the per-IP one, which runs outside it).
var perRequestHeaders = []string{"Date", "X-Request-Id", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"}

// lookalikeClient sends every request over one kept-alive connection, so
// the timings compare the server's work, not connection set-up.
var lookalikeClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

type timedResponse struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

func timedPost(t *testing.T, url, contentType string, body []byte) timedResponse {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	start := time.Now()
	resp, err := lookalikeClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	return timedResponse{status: resp.StatusCode, header: resp.Header, body: raw, took: took}
}

// sameResponse reports how dup differs from fresh beyond the per-request
// headers: status, body, header names and values.
func sameResponse(dup, fresh timedResponse) []string {
	var diffs []string
	if dup.status != fresh.status {
		diffs = append(diffs, fmt.Sprintf("status %d vs %d", dup.status, fresh.status))
	}
	if !bytes.Equal(dup.body, fresh.body) {
		diffs = append(diffs, fmt.Sprintf("body %q vs %q", dup.body, fresh.body))
	}
	names := map[string]bool{}
	for k := range dup.header {
		names[k] = true
	}
	for k := range fresh.header {
		names[k] = true
	}
	for k := range names {
		if slices.Contains(perRequestHeaders, k) {
			if (dup.header[k] == nil) != (fresh.header[k] == nil) {
				diffs = append(diffs, "header "+k+" present in one only")
			}
			continue
		}
		if !slices.Equal(dup.header[k], fresh.header[k]) {
			diffs = append(diffs, fmt.Sprintf("header %s: %q vs %q", k, dup.header[k], fresh.header[k]))
		}
	}
	slices.Sort(diffs)
	return diffs
}

func medianOf(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func percentileOf(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

// Whether an address is registered must not show in the answer to a new
// registration with it: not in the status, the body, the headers, nor the
// time it takes.
func TestDuplicateAndNewLookTheSame(t *testing.T) {
	h := newHarness(t)
	h.createEvent("lookalike")
	api := h.pub.Base + "/api/events/lookalike/registrations"
	jsonBody := func(email string) []byte {
		return []byte(fmt.Sprintf(`{"name":"Ama Owusu","email":%q,"mode":"online","consent":true}`, email))
	}
	if r := timedPost(t, api, "application/json", jsonBody("taken@example.org")); r.status != http.StatusAccepted {
		t.Fatalf("first registration: %d %s", r.status, r.body)
	}
	h.waitPublished(events.RegistrationConfirmed, 1)

	// Byte for byte, on the API and the form, several times over.
	fresh := 0
	newAddress := func() string { fresh++; return fmt.Sprintf("new%03d@example.org", fresh) }
	varied := map[string]bool{}
	for i := range 10 {
		dup := timedPost(t, api, "application/json", jsonBody("taken@example.org"))
		nw := timedPost(t, api, "application/json", jsonBody(newAddress()))
		if dup.status != http.StatusAccepted {
			t.Fatalf("duplicate: %d %s", dup.status, dup.body)
		}
		if d := sameResponse(dup, nw); len(d) > 0 {
			t.Errorf("API pair %d: a duplicate answers differently from a new address: %v", i, d)
		}
		for _, k := range perRequestHeaders {
			if dup.header.Get(k) != nw.header.Get(k) {
				varied[k] = true
			}
		}
		form := func(email string) []byte {
			return []byte(url.Values{"name": {"Ama Owusu"}, "email": {email}, "mode": {"online"}, "consent": {"true"}}.Encode())
		}
		fdup := timedPost(t, h.pub.Base+"/e/lookalike", "application/x-www-form-urlencoded", form("taken@example.org"))
		fnew := timedPost(t, h.pub.Base+"/e/lookalike", "application/x-www-form-urlencoded", form(newAddress()))
		if fdup.status != http.StatusSeeOther {
			t.Fatalf("form duplicate: %d %s", fdup.status, fdup.body)
		}
		if d := sameResponse(fdup, fnew); len(d) > 0 {
			t.Errorf("form pair %d: a duplicate answers differently from a new address: %v", i, d)
		}
	}
	var names []string
	for k := range varied {
		names = append(names, k)
	}
	slices.Sort(names)
	t.Logf("headers that differed between a duplicate and a new address (all per request, whoever asks): %v", names)

	// Timing. Pairs in a random order (a fixed seed): the decider works on
	// each request just after its answer, and a new registration costs it
	// more than a duplicate; always sending the duplicate second would
	// charge that to the duplicate.
	const pairs = 200
	rng := rand.New(rand.NewPCG(1, 2))
	var durDup, durNew []time.Duration
	for range 20 { // warm-up, not counted
		timedPost(t, api, "application/json", jsonBody(newAddress()))
	}
	for range pairs {
		dupFirst := rng.IntN(2) == 0
		for k := range 2 {
			if (k == 0) == dupFirst {
				r := timedPost(t, api, "application/json", jsonBody("taken@example.org"))
				if r.status != http.StatusAccepted {
					t.Fatalf("duplicate: %d %s", r.status, r.body)
				}
				durDup = append(durDup, r.took)
			} else {
				r := timedPost(t, api, "application/json", jsonBody(newAddress()))
				if r.status != http.StatusAccepted {
					t.Fatalf("new: %d %s", r.status, r.body)
				}
				durNew = append(durNew, r.took)
			}
		}
	}
	mDup, mNew := medianOf(durDup), medianOf(durNew)
	diff := (mDup - mNew).Abs()
	// Within noise: the two medians of interleaved samples differ by less
	// than 2 ms, or by less than a quarter of the smaller one (for a slow,
	// loaded machine where every request takes tens of milliseconds). A
	// path that read MongoDB for the duplicate (a scan on FerretDB) or
	// waited for the decider would stand out by more than both.
	limit := max(2*time.Millisecond, min(mDup, mNew)/4)
	t.Logf("%d pairs: median duplicate %s, median new %s (|Δ| %s, limit %s); p90 duplicate %s, new %s",
		pairs, mDup, mNew, diff, limit, percentileOf(durDup, 0.9), percentileOf(durNew, 0.9))
	if diff >= limit {
		t.Errorf("a duplicate's answer takes %s, a new address's %s: the difference shows who is registered", mDup, mNew)
	}

	// Behind the identical answers the decider told them apart: every
	// duplicate was announced as such, every new address confirmed.
	wantDup := 10 + 10 + pairs
	testkit.Eventually(t, 20*time.Second, func() error {
		d, c := len(h.published(events.RegistrationDuplicateAttempt)), len(h.published(events.RegistrationConfirmed))
		if d != wantDup || c != 1+fresh {
			return fmt.Errorf("%d duplicate attempts (want %d), %d confirmed (want %d)", d, wantDup, c, 1+fresh)
		}
		return nil
	})
	for _, p := range h.published(events.RegistrationDuplicateAttempt) {
		if !strings.EqualFold(p.Email, "taken@example.org") {
			t.Fatalf("duplicate attempt about %s", p.Email)
		}
	}
}
