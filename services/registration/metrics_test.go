package registration

import (
	"fmt"
	"testing"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/testkit"
)

// histogram reads a histogram from /metrics: how many observations, and
// their sum.
func (h *harness) histogram(name string) (count, sum int) {
	h.t.Helper()
	body := h.pub.Do(h.t, "GET", "/metrics", nil).Body
	read := func(name string) int {
		v, ok := testkit.Metric(body, name)
		if !ok {
			h.t.Fatalf("/metrics has no %s", name)
		}
		return int(v)
	}
	return read(name + "_count"), read(name + "_sum")
}

// The decider's batches and the committer's groups are counted in
// requests: four registrations, four requests in one to four of each.
func TestDeciderMetricsCountWhatItDecided(t *testing.T) {
	h := newHarness(t)
	h.createEvent("metrics")
	const batchSize, groupSize = "registration_decider_batch_size", "registration_request_group_size"
	batches0, requests0 := h.histogram(batchSize)
	groups0, grouped0 := h.histogram(groupSize)
	for i := range 4 {
		registerVia(t, h.pub, "metrics", regBody("P", fmt.Sprintf("p%d@example.org", i), events.ModeOnline))
	}
	h.waitPublished(events.RegistrationConfirmed, 4)
	// A batch is observed just after its outcomes are announced.
	testkit.Eventually(t, 5*time.Second, func() error {
		batches, requests := h.histogram(batchSize)
		if requests-requests0 != 4 || batches-batches0 < 1 || batches-batches0 > 4 {
			return fmt.Errorf("%d batches of %d requests in all after 4 registrations", batches-batches0, requests-requests0)
		}
		return nil
	})
	if groups, grouped := h.histogram(groupSize); grouped-grouped0 != 4 || groups-groups0 < 1 || groups-groups0 > 4 {
		t.Errorf("%d groups of %d requests in all stored for 4 registrations", groups-groups0, grouped-grouped0)
	}
}
