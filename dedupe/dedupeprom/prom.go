// Package dedupeprom counts a dedupe.Consumer's outcomes in Prometheus,
// through ConsumerConfig.OnEvent:
//
//	m, err := dedupeprom.New(registry) // your registry, not the global one
//	cfg.OnEvent = m.Observe
//
// It exports idem_dedupe_events_total{group, topic, outcome} (processed,
// duplicate, rejected, dead_lettered, retried, dead_letter_produced; topic
// is "" for dead_letter_produced).
package dedupeprom

import (
	"errors"

	"github.com/idem-dev/idem/dedupe"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the counters.
type Metrics struct {
	events *prometheus.CounterVec
}

// New registers the counters with reg, which is required: the package
// never touches the global default registry. Several consumers can share
// one Metrics (the group is a label).
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("dedupeprom: nil Registerer")
	}
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idem_dedupe_events_total",
		Help: "Outcomes of the dedupe consumer: records settled, attempts retried, dead letters produced.",
	}, []string{"group", "topic", "outcome"})
	if err := reg.Register(events); err != nil {
		return nil, err
	}
	return &Metrics{events: events}, nil
}

// Observe counts e; set it as dedupe.ConsumerConfig.OnEvent.
func (m *Metrics) Observe(e dedupe.Event) {
	m.events.WithLabelValues(e.Group, e.Topic, e.Outcome.String()).Inc()
}
