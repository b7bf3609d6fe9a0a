package brokertest

import (
	"slices"
	"testing"
)

// Metric reads the series name{labels} from the broker's Prometheus
// registry, as /metrics would show it: a counter's or gauge's value, or a
// histogram's sample count with its sum. labels are name, value pairs and
// must match all of the series' labels; ok is false when there is no such
// series.
func (b *Broker) Metric(t testing.TB, name string, labels ...string) (value, sum float64, ok bool) {
	t.Helper()
	mfs, err := b.Registry().Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel())*2 != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				i := slices.Index(labels, l.GetName())
				if i < 0 || i%2 != 0 || labels[i+1] != l.GetValue() {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), 0, true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), 0, true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum(), true
			}
		}
	}
	return 0, 0, false
}
