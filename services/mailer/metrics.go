package mailer

import "github.com/prometheus/client_golang/prometheus"

// Kinds of durable writes, the label of mailer_durable_writes_total.
const (
	// writeLedger is one stored group of sent records: one message on
	// MAIL_SENT.
	writeLedger = "ledger_batch"
	// writeStatus is one stored status publish: an atomic batch counts once.
	writeStatus = "status_publish"
	// writeAck, writeNak and writeTerm settle deliveries: consumer state, no
	// stored message (MAIL has limits retention, so an ack deletes nothing).
	writeAck  = "ack"
	writeNak  = "nak"
	writeTerm = "term"
	// writeDeadLetter is one message stored on DLQ.
	writeDeadLetter = "dead_letter"
)

type metrics struct {
	outcomes      *prometheus.CounterVec
	durableWrites *prometheus.CounterVec
	batchSize     prometheus.Histogram
	sendSeconds   prometheus.Histogram
	windowWait    prometheus.Histogram
	recordWindow  prometheus.Histogram
	lookupSeconds prometheus.Histogram
	unrecorded    prometheus.Gauge
	indexRecords  prometheus.Gauge
	// unrecordedTotal counts emails sent whose record failed for good.
	unrecordedTotal prometheus.Counter
	ambiguous       prometheus.Counter
	dials           prometheus.Counter
	connsOpen       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailer_jobs_total", Help: "Mail jobs by outcome (sent, deferred, failed, skipped_duplicate).",
		}, []string{"outcome"}),
		durableWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailer_durable_writes_total",
			Help: "Durable writes by kind: ledger_batch (one stored group of sent records), status_publish (one stored batch or message), ack, nak, term, dead_letter.",
		}, []string{"kind"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mailer_batch_size", Help: "Mail jobs per batch taken from MAIL.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		sendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mailer_smtp_send_seconds", Help: "Time to hand one email to the SMTP server, from MAIL FROM to the 250.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		windowWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailer_window_wait_seconds",
			Help:    "Time a connection held a complete message before its final dot, waiting for the sent ledger to catch up.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		recordWindow: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailer_record_window_seconds",
			Help:    "Time between the SMTP 250 and the sent record: the only window in which a crash can duplicate an email.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		lookupSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mailer_ledger_lookup_seconds", Help: "Time to look up the redelivered jobs of a batch in the sent ledger.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		unrecorded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailer_unrecorded_emails", Help: "Emails committed to the SMTP server and not yet recorded (at most MAILER_MAX_UNRECORDED).",
		}),
		indexRecords: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailer_sent_index_records", Help: "Jobs recorded as sent that this process holds in memory (MAIL_SENT read so far, within its MaxAge).",
		}),
		unrecordedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailer_sent_unrecorded_total", Help: "Emails sent whose sent record could not be written.",
		}),
		ambiguous: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailer_smtp_ambiguous_total", Help: "Connections lost between the final dot and the reply: the email may have been delivered and is retried.",
		}),
		dials: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailer_smtp_dials_total", Help: "SMTP connections opened.",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailer_smtp_connections", Help: "SMTP connections open now.",
		}),
	}
	reg.MustRegister(m.outcomes, m.durableWrites, m.batchSize, m.sendSeconds, m.windowWait, m.recordWindow,
		m.lookupSeconds, m.unrecorded, m.indexRecords, m.unrecordedTotal, m.ambiguous, m.dials, m.connsOpen)
	return m
}
