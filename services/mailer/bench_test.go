package mailer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
)

// benchJob is about the size of a confirmation: text, HTML and an .ics.
func benchJob(prefix string) func(i int) events.MailJob {
	return func(i int) events.MailJob {
		id := fmt.Sprintf("%s.%d", prefix, i)
		return events.MailJob{
			ID: id, Kind: "confirmation", To: fmt.Sprintf("%s-%d@example.org", prefix, i), ToName: "Participant " + strconv.Itoa(i),
			Subject: "Your registration is confirmed " + id,
			Text:    strings.Repeat("Your registration for the roundtable is confirmed. ", 20),
			HTML:    "<html><body>" + strings.Repeat("<p>Your registration for the roundtable is confirmed.</p>", 50) + "</body></html>",
			Attachments: []events.Attachment{{Name: "event.ics", ContentType: "text/calendar",
				Data: []byte("BEGIN:VCALENDAR\r\n" + strings.Repeat("X-PAD:0123456789012345678901234567890123456789\r\n", 20) + "END:VCALENDAR\r\n")}},
		}
	}
}

// BenchmarkDrain measures the mailer draining a full queue (first to last
// email at the sink) beside bare go-mail (BareSendRate) over as many
// connections into the same sink, with the same emails. MAILER_BENCH_EMAILS
// sets the emails per run (default 2,000), MAILER_BENCH_WORKERS the
// connections (default 4).
func BenchmarkDrain(b *testing.B) {
	n, workers := envInt("MAILER_BENCH_EMAILS", 2000), envInt("MAILER_BENCH_WORKERS", 4)
	var mailerRate, bareRate float64
	for k := range b.N {
		h := newHarness(b)
		h.cfg.Workers = workers
		h.cfg.MaxUnrecorded = envInt("MAILER_BENCH_MAX_UNRECORDED", 0)
		job := benchJob(fmt.Sprintf("drain%d", k))
		jobs := make([]events.MailJob, n)
		for i := range jobs {
			jobs[i] = job(i)
		}
		h.publish(jobs...)
		stop := h.start()
		msgs := h.smtp.WaitFor(b, n, 5*time.Minute)
		if k == 0 {
			b.Logf("mailer metrics after the drain:\n%s", scrape(b, h.url))
		}
		stop()
		at := make([]time.Time, len(msgs))
		for i, m := range msgs {
			at[i] = m.Envelope.At
		}
		sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
		mailerRate += float64(n-1) / at[n-1].Sub(at[0]).Seconds()

		rate, err := BareSendRate(context.Background(), h.cfg.SMTP, workers, n, benchJob(fmt.Sprintf("bare%d", k)))
		if err != nil {
			b.Fatal(err)
		}
		bareRate += rate
	}
	mailerRate /= float64(b.N)
	bareRate /= float64(b.N)
	b.ReportMetric(mailerRate, "mailer_emails/s")
	b.ReportMetric(bareRate, "gomail_sends/s")
	b.ReportMetric(mailerRate/bareRate, "ratio")
}

// scrape returns the mailer's own metrics.
func scrape(t testing.TB, base string) string {
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "mailer_") && !strings.Contains(l, "_bucket") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
