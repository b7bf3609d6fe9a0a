// Package webhookprom exports the dispatcher's metrics to Prometheus, on a
// registry the caller passes (never the global one): attempts by outcome
// and their latency, counted through Config.OnAttempt, and the queue's state
// (depth and oldest pending per endpoint, dead letters, disabled endpoints),
// read from the store at each scrape.
package webhookprom

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idem-dev/idem/webhook"
)

// Metrics counts attempts and reads the queue from a store.
type Metrics struct {
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	store    webhook.Store
	now      func() time.Time

	queueDepth, oldest, dead *prometheus.Desc
	endpoints, disabled      *prometheus.Desc
	scrapeErrors             prometheus.Counter
}

// New registers the metrics on reg. store is read at each scrape (with a
// 5 s timeout).
func New(reg prometheus.Registerer, store webhook.Store) (*Metrics, error) {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idem_webhook_deliveries_total",
			Help: "Delivery attempts by outcome: succeeded, failed (retried later), dead (dead-lettered after the last attempt), gone (410: endpoint disabled)."},
			[]string{"outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "idem_webhook_attempt_duration_seconds",
			Help: "Time from sending a request to the endpoint's answer (or the failure).", Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14)},
			[]string{"outcome"}),
		store: store, now: time.Now,
		queueDepth: prometheus.NewDesc("idem_webhook_queue_depth", "Pending deliveries per endpoint (in flight, waiting for a retry, or held by a disabled endpoint).", []string{"endpoint"}, nil),
		oldest:     prometheus.NewDesc("idem_webhook_oldest_pending_seconds", "Age of the oldest pending delivery per endpoint.", []string{"endpoint"}, nil),
		dead:       prometheus.NewDesc("idem_webhook_dead_lettered", "Dead-lettered deliveries kept for replay, per endpoint.", []string{"endpoint"}, nil),
		endpoints:  prometheus.NewDesc("idem_webhook_endpoints", "Endpoints.", nil, nil),
		disabled:   prometheus.NewDesc("idem_webhook_endpoints_disabled", "Disabled endpoints (by an operator, a 410, or failing for the disable period).", nil, nil),
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "idem_webhook_stats_errors_total",
			Help: "Scrapes whose queue statistics could not be read from the store."}),
	}
	for _, c := range []prometheus.Collector{m.attempts, m.latency, m.scrapeErrors, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Observe counts one attempt; pass it as webhook.Config.OnAttempt.
func (m *Metrics) Observe(r webhook.AttemptResult) {
	if r.Outcome == webhook.OutcomeReleased {
		return
	}
	m.attempts.WithLabelValues(string(r.Outcome)).Inc()
	m.latency.WithLabelValues(string(r.Outcome)).Observe(r.Latency.Seconds())
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.queueDepth, m.oldest, m.dead, m.endpoints, m.disabled} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the queue as the store has it.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := m.store.Stats(ctx)
	if err != nil {
		m.scrapeErrors.Inc()
		return
	}
	now := m.now()
	for ep, n := range st.Pending {
		ch <- prometheus.MustNewConstMetric(m.queueDepth, prometheus.GaugeValue, float64(n), ep)
		ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, max(0, now.Sub(st.OldestPending[ep]).Seconds()), ep)
	}
	for ep, n := range st.Dead {
		ch <- prometheus.MustNewConstMetric(m.dead, prometheus.GaugeValue, float64(n), ep)
	}
	ch <- prometheus.MustNewConstMetric(m.endpoints, prometheus.GaugeValue, float64(st.Endpoints))
	ch <- prometheus.MustNewConstMetric(m.disabled, prometheus.GaugeValue, float64(st.Disabled))
}
