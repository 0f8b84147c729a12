package registration

import "github.com/prometheus/client_golang/prometheus"

// deciderMetrics show how the decider keeps up: the size and duration of
// its batches, and how many requests it decided.
type deciderMetrics struct {
	batchSize    prometheus.Histogram
	batchSeconds prometheus.Histogram
	decided      prometheus.Counter
}

func newDeciderMetrics(reg prometheus.Registerer) *deciderMetrics {
	m := &deciderMetrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "registration_decider_batch_size",
			Help:    "Requests per batch the decider took from REGISTRATION_REQUESTS.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "registration_decider_batch_seconds",
			Help:    "Time to decide, write, announce and acknowledge one batch, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		decided: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registration_decider_requests_total",
			Help: "Requests taken from REGISTRATION_REQUESTS and settled by the decider.",
		}),
	}
	reg.MustRegister(m.batchSize, m.batchSeconds, m.decided)
	return m
}

// newGroupSizes is the histogram of the request groups the committer
// stored: how many requests shared each message (and its fsync).
func newGroupSizes(reg prometheus.Registerer) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "registration_request_group_size",
		Help:    "Requests stored together as one message on REGISTRATION_REQUESTS (one when alone; requests with an Idempotency-Key are not counted).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11),
	})
	reg.MustRegister(h)
	return h
}
