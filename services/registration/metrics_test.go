package registration

import (
	"fmt"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// deciderBatches reads the decider's batch-size histogram from /metrics:
// how many batches, and how many requests in them.
func (h *harness) deciderBatches() (batches, requests int) {
	h.t.Helper()
	body := h.pub.Do(h.t, "GET", "/metrics", nil).Body
	read := func(name string) int {
		v, ok := testkit.Metric(body, name)
		if !ok {
			h.t.Fatalf("/metrics has no %s", name)
		}
		return int(v)
	}
	return read("registration_decider_batch_size_count"), read("registration_decider_batch_size_sum")
}

func TestDeciderMetricsCountWhatItDecided(t *testing.T) {
	h := newHarness(t)
	h.createEvent("metrics")
	batches0, requests0 := h.deciderBatches()
	for i := range 4 {
		registerVia(t, h.pub, "metrics", regBody("P", fmt.Sprintf("p%d@example.org", i), events.ModeOnline))
	}
	h.waitPublished(events.RegistrationConfirmed, 4)
	// A batch is observed just after its outcomes are announced.
	testkit.Eventually(t, 5*time.Second, func() error {
		batches, requests := h.deciderBatches()
		if requests-requests0 != 4 || batches-batches0 < 1 || batches-batches0 > 4 {
			return fmt.Errorf("%d batches of %d requests in all after 4 registrations", batches-batches0, requests-requests0)
		}
		return nil
	})
}
