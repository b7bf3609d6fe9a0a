package idempotencyprom_test

import (
	"strings"
	"testing"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/idempotencyprom"
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

func TestCountsOutcomesOnTheGivenRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := idempotencyprom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []idempotency.Outcome{idempotency.OutcomeProcessed, idempotency.OutcomeReplayed, idempotency.OutcomeReplayed, idempotency.OutcomeConflict} {
		m.Observe(idempotency.Event{Outcome: o})
	}
	m.Observe(idempotency.Event{Outcome: idempotency.OutcomeProcessed, BodyOmitted: true})
	got := counters(t, reg)
	for k, want := range map[string]float64{
		"idem_idempotency_requests_total{outcome=processed}": 2,
		"idem_idempotency_requests_total{outcome=replayed}":  2,
		"idem_idempotency_requests_total{outcome=conflict}":  1,
		"idem_idempotency_requests_total{outcome=mismatch}":  0,
		"idem_idempotency_bodies_omitted_total{}":            1,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
	if _, err := idempotencyprom.New(nil); err == nil {
		t.Error("New(nil) did not fail; it must never fall back to the global registry")
	}
	if _, err := idempotencyprom.New(reg); err == nil {
		t.Error("registering twice on one registry did not fail")
	}
}

// BenchmarkObserve is the hook's cost per request.
func BenchmarkObserve(b *testing.B) {
	m, err := idempotencyprom.New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	e := idempotency.Event{Outcome: idempotency.OutcomeReplayed, Status: 201}
	for b.Loop() {
		m.Observe(e)
	}
}
