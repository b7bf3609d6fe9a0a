package kafka

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/kafka/api"
)

// Metrics are the wire server's Prometheus collectors, registered on the
// broker's own registry (never the global one, so two brokers in one test
// process do not clash).
type Metrics struct {
	latency *prometheus.HistogramVec
	byKey   [256]prometheus.Observer // resolved once per key: no label lookups per request
	refusal *prometheus.CounterVec
	waits   *prometheus.CounterVec
	muted   prometheus.Counter
}

// NewMetrics registers the server's collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idem_kafka_request_latency_seconds",
			Help:    "Time from reading a Kafka request to writing its response (or dropping it for acks=0), by API.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"api"}),
	}
	m.refusal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idem_kafka_connections_refused_total",
		Help: "Connections closed at accept because a limit was reached, by limit (max.connections, max.connections.per.ip), or because their TLS handshake failed (tls).",
	}, []string{"limit"})
	m.waits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idem_kafka_memory_waits_total",
		Help: "Times a connection's reader waited for memory budget instead of allocating: queued.max.request.bytes (request) or the per-connection response bound (response).",
	}, []string{"budget"})
	m.muted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "idem_kafka_throttled_total",
		Help: "Times a connection was muted because its client exceeded a quota (producer_byte_rate, consumer_byte_rate, request_percentage).",
	})
	reg.MustRegister(m.latency, m.refusal, m.waits, m.muted)
	// Only served keys get series: a request for any other key closes the
	// connection before it is observed.
	for _, v := range api.Versions() {
		name := kmsg.NameForKey(v.Key)
		if name == "" {
			name = strconv.Itoa(int(v.Key))
		}
		m.byKey[v.Key] = m.latency.WithLabelValues(name)
	}
	return m
}

func (m *Metrics) refused(limit string) {
	if m != nil {
		m.refusal.WithLabelValues(limit).Inc()
	}
}

func (m *Metrics) waited(budget string) {
	if m != nil {
		m.waits.WithLabelValues(budget).Inc()
	}
}

func (m *Metrics) throttled() {
	if m != nil {
		m.muted.Inc()
	}
}

func (m *Metrics) observe(key int16, d time.Duration) {
	if m == nil || key < 0 || int(key) >= len(m.byKey) || m.byKey[key] == nil {
		return
	}
	m.byKey[key].Observe(d.Seconds())
}
