package console

import (
	"math"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// sample is the request counters at one time, for rates between two
// overview loads.
type sample struct {
	at                          time.Time
	produce, fetches            uint64
	producedBytes, fetchedBytes int64
}

// overviewMetrics are the overview's figures from the registry. A figure
// the registry lacks stays at its zero value and Has says so.
type overviewMetrics struct {
	Has map[string]bool

	ProduceRequests, FetchRequests uint64
	// Rates are per second since the previous overview load (RateWindow
	// ago); zero on the first load.
	ProduceRate, FetchRate float64
	RateWindow             time.Duration
	ProduceMeanMs          float64
	// Bytes of record batches produced and fetched, over every topic
	// (idem_topic_*_bytes_total), and their rates like the others.
	ProducedBytes, FetchedBytes       int64
	ProducedByteRate, FetchedByteRate float64
	ProduceP99Ms                      float64
	FetchMeanMs                       float64

	FsyncMeanMs, FsyncP99Ms float64
	Fsyncs                  uint64
	Connections             int64

	DiskFreeBytes, LogBytes int64
	DiskFull                bool
	PartitionsOffline       int64
	OpenFDs                 int64
	ResidentBytes           int64
	Goroutines              int64
	Throttled               uint64
	ConnectionsRefused      uint64
}

// deliveryMetrics are the delivery contract's live counters.
type deliveryMetrics struct {
	Has map[string]bool

	Duplicates, OutOfOrder, ProducersActive int64

	ShareEvents        map[string]int64
	ShareDeliveries    uint64 // records handed out
	ShareRedeliveries  uint64 // of which with a delivery count above 1
	DeadLettersPending int64

	TxnOpen, TxnCommitted, TxnAborted, TxnHanging int

	// Counters of idem_transactions_total, since the broker started
	// (TxnsAborted includes those the coordinator timed out).
	TxnsBegun, TxnsCommitted, TxnsAborted int64
}

// gather reads the registry into families by name.
func (c *Console) gather() map[string]*dto.MetricFamily {
	out := map[string]*dto.MetricFamily{}
	if c.cfg.Gatherer == nil {
		return out
	}
	mfs, err := c.cfg.Gatherer.Gather()
	if err != nil {
		c.cfg.Logger.Debug("console: gather metrics", "err", err)
	}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// value is a gauge's or counter's value, summed over series.
func value(mfs map[string]*dto.MetricFamily, name string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	var v float64
	for _, m := range mf.GetMetric() {
		switch {
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v, true
}

// histogram finds the series of a histogram with label key=val.
func histogram(mfs map[string]*dto.MetricFamily, name, key, val string) *dto.Histogram {
	mf, ok := mfs[name]
	if !ok {
		return nil
	}
	for _, m := range mf.GetMetric() {
		if key == "" || label(m, key) == val {
			return m.GetHistogram()
		}
	}
	return nil
}

func mean(h *dto.Histogram) float64 {
	if h.GetSampleCount() == 0 {
		return 0
	}
	return h.GetSampleSum() / float64(h.GetSampleCount())
}

// quantile is the upper bound of the bucket holding quantile q: an upper
// estimate, as coarse as the buckets.
func quantile(h *dto.Histogram, q float64) float64 {
	n := h.GetSampleCount()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() >= rank {
			return b.GetUpperBound()
		}
	}
	return math.Inf(1)
}

func (c *Console) overviewMetrics() overviewMetrics {
	mfs := c.gather()
	o := overviewMetrics{Has: map[string]bool{}}
	now := time.Now()
	if h := histogram(mfs, "idem_kafka_request_latency_seconds", "api", "Produce"); h != nil {
		o.Has["produce"] = true
		o.ProduceRequests = h.GetSampleCount()
		o.ProduceMeanMs = mean(h) * 1000
		o.ProduceP99Ms = quantile(h, 0.99) * 1000
	}
	if h := histogram(mfs, "idem_kafka_request_latency_seconds", "api", "Fetch"); h != nil {
		o.Has["fetch"] = true
		o.FetchRequests = h.GetSampleCount()
		o.FetchMeanMs = mean(h) * 1000
	}
	if v, ok := value(mfs, "idem_topic_produced_bytes_total"); ok {
		o.Has["produced_bytes"], o.ProducedBytes = true, int64(v)
	}
	if v, ok := value(mfs, "idem_topic_fetched_bytes_total"); ok {
		o.Has["fetched_bytes"], o.FetchedBytes = true, int64(v)
	}
	c.mu.Lock()
	if c.last != nil {
		o.RateWindow = now.Sub(c.last.at)
		if secs := o.RateWindow.Seconds(); secs > 0 {
			o.ProduceRate = float64(o.ProduceRequests-min(o.ProduceRequests, c.last.produce)) / secs
			o.FetchRate = float64(o.FetchRequests-min(o.FetchRequests, c.last.fetches)) / secs
			o.ProducedByteRate = float64(max(o.ProducedBytes-c.last.producedBytes, 0)) / secs
			o.FetchedByteRate = float64(max(o.FetchedBytes-c.last.fetchedBytes, 0)) / secs
		}
	}
	c.last = &sample{at: now, produce: o.ProduceRequests, fetches: o.FetchRequests, producedBytes: o.ProducedBytes, fetchedBytes: o.FetchedBytes}
	c.mu.Unlock()
	if h := histogram(mfs, "idem_log_fsync_seconds", "", ""); h != nil {
		o.Has["fsync"] = true
		o.Fsyncs, o.FsyncMeanMs, o.FsyncP99Ms = h.GetSampleCount(), mean(h)*1000, quantile(h, 0.99)*1000
	}
	set := func(key, name string, dst *int64) {
		if v, ok := value(mfs, name); ok {
			o.Has[key], *dst = true, int64(v)
		}
	}
	set("connections", "idem_kafka_connections", &o.Connections)
	set("disk_free", "idem_disk_free_bytes", &o.DiskFreeBytes)
	set("log_bytes", "idem_log_size_bytes", &o.LogBytes)
	set("offline", "idem_partitions_offline", &o.PartitionsOffline)
	set("fds", "process_open_fds", &o.OpenFDs)
	set("rss", "process_resident_memory_bytes", &o.ResidentBytes)
	set("goroutines", "go_goroutines", &o.Goroutines)
	if v, ok := value(mfs, "idem_disk_full"); ok {
		o.DiskFull = v > 0
	}
	if v, ok := value(mfs, "idem_kafka_throttled_total"); ok {
		o.Throttled = uint64(v)
	}
	if v, ok := value(mfs, "idem_kafka_connections_refused_total"); ok {
		o.ConnectionsRefused = uint64(v)
	}
	return o
}

func (c *Console) deliveryMetrics() deliveryMetrics {
	mfs := c.gather()
	d := deliveryMetrics{Has: map[string]bool{}, ShareEvents: map[string]int64{}}
	set := func(key, name string, dst *int64) {
		if v, ok := value(mfs, name); ok {
			d.Has[key], *dst = true, int64(v)
		}
	}
	set("duplicates", "idem_idempotent_duplicates_total", &d.Duplicates)
	set("out_of_order", "idem_out_of_order_sequence_total", &d.OutOfOrder)
	set("producers", "idem_producer_ids_active", &d.ProducersActive)
	set("dead_letters_pending", "idem_share_dead_letters_pending", &d.DeadLettersPending)
	if mf, ok := mfs["idem_share_records_total"]; ok {
		d.Has["share"] = true
		for _, m := range mf.GetMetric() {
			d.ShareEvents[label(m, "event")] += int64(m.GetCounter().GetValue())
		}
	}
	if mf, ok := mfs["idem_transactions_total"]; ok {
		d.Has["transactions"] = true
		for _, m := range mf.GetMetric() {
			v := int64(m.GetCounter().GetValue())
			switch label(m, "outcome") {
			case "begun":
				d.TxnsBegun = v
			case "committed":
				d.TxnsCommitted = v
			case "aborted", "timed_out":
				d.TxnsAborted += v
			}
		}
	}
	if h := histogram(mfs, "idem_share_delivery_count", "", ""); h != nil {
		d.Has["deliveries"] = true
		d.ShareDeliveries = h.GetSampleCount()
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() >= 1 {
				d.ShareRedeliveries = d.ShareDeliveries - min(d.ShareDeliveries, b.GetCumulativeCount())
				break
			}
		}
	}
	return d
}
