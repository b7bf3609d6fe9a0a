// Package idempotencyprom counts the idempotency middleware's outcomes in
// Prometheus, through Config.OnOutcome:
//
//	m, err := idempotencyprom.New(registry) // your registry, not the global one
//	cfg.OnOutcome = m.Observe
//
// It exports idem_idempotency_requests_total{outcome} (processed, replayed,
// conflict, mismatch, rejected, released, unkeyed, store_error) and
// idem_idempotency_bodies_omitted_total (responses over MaxResponseBytes).
package idempotencyprom

import (
	"errors"

	"github.com/idem-dev/idem/idempotency"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the counters.
type Metrics struct {
	byOutcome [idempotency.OutcomeStoreError + 1]prometheus.Counter
	other     prometheus.Counter
	omitted   prometheus.Counter
}

// New registers the counters with reg, which is required: the package
// never touches the global default registry.
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("idempotencyprom: nil Registerer")
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idem_idempotency_requests_total",
		Help: "Requests handled by the Idempotency-Key middleware, by outcome.",
	}, []string{"outcome"})
	omitted := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "idem_idempotency_bodies_omitted_total",
		Help: "Responses sent but not stored because they exceeded MaxResponseBytes.",
	})
	for _, c := range []prometheus.Collector{requests, omitted} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &Metrics{omitted: omitted, other: requests.WithLabelValues("other")}
	for o := idempotency.OutcomeProcessed; o <= idempotency.OutcomeStoreError; o++ {
		m.byOutcome[o] = requests.WithLabelValues(o.String()) // resolved once: Observe does no lookup
	}
	return m, nil
}

// Observe counts e; set it as idempotency.Config.OnOutcome.
func (m *Metrics) Observe(e idempotency.Event) {
	if e.Outcome > 0 && int(e.Outcome) < len(m.byOutcome) {
		m.byOutcome[e.Outcome].Inc()
	} else {
		m.other.Inc()
	}
	if e.BodyOmitted {
		m.omitted.Inc()
	}
}
