package share

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Redeliveries are every delivery after a record's first, reported as the
// redelivered event beside the other record events.
func TestMetricsRedelivered(t *testing.T) {
	c := &Coordinator{}
	c.stats.observeDelivery(1, 5) // first deliveries
	c.stats.observeDelivery(2, 2)
	c.stats.observeDelivery(4, 1)
	c.stats.observeDelivery(30, 1) // the last bucket holds later deliveries
	if got := c.Stats().Redelivered(); got != 4 {
		t.Fatalf("Redelivered = %d, want 4", got)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "idem_share_records_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			events[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	for event, want := range map[string]float64{"redelivered": 4, "lock_expired": 0, "dead_lettered": 0} {
		if got, ok := events[event]; !ok || got != want {
			t.Errorf("idem_share_records_total{event=%q} = %v (reported %v), want %v", event, got, ok, want)
		}
	}
}
