package dedupeprom_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/dedupeprom"
	"github.com/prometheus/client_golang/prometheus"
)

// counters returns every counter sample of reg as "name{k=v,…}" → value.
func counters(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestCountsEventsOnTheGivenRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := dedupeprom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []dedupe.Outcome{dedupe.OutcomeProcessed, dedupe.OutcomeProcessed, dedupe.OutcomeRetried, dedupe.OutcomeDeadLettered} {
		m.Observe(dedupe.Event{Group: "billing", Topic: "charges", Outcome: o})
	}
	want := map[string]float64{
		"idem_dedupe_events_total{group=billing,outcome=dead_lettered,topic=charges}": 1,
		"idem_dedupe_events_total{group=billing,outcome=processed,topic=charges}":     2,
		"idem_dedupe_events_total{group=billing,outcome=retried,topic=charges}":       1,
	}
	if got := counters(t, reg); !maps.Equal(got, want) {
		t.Fatalf("counters %v, want %v", got, want)
	}
	if _, err := dedupeprom.New(nil); err == nil {
		t.Error("New(nil) did not fail; it must never fall back to the global registry")
	}
}
