package broker

// The semantics metrics (issue 15): traffic per topic, the group commit's
// fsyncs, transactions, fenced producers, consumer-group lag and
// rebalances. The packages below the broker stay free of Prometheus: they
// keep plain atomic counters (partition.Partition.Traffic, txn.Stats), a
// hook (logstore.Disk.ObserveSyncs) or a snapshot (group.Coordinator.
// Snapshot), and the collectors here read them at scrape time. docs/metrics.md
// lists every metric.

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/topics"
	"github.com/idem-dev/idem/internal/txn"
)

// maxLagSeries bounds idem_consumer_group_lag: committed offsets beyond it
// (whole groups, in group order) are left out of a scrape and counted in
// idem_consumer_group_lag_skipped instead.
const maxLagSeries = 10_000

// registerSemanticsMetrics adds the collectors of this file and hooks the
// fsync histograms into every log that uses disk.
func (b *Broker) registerSemanticsMetrics(parts *topics.Manager, disk *logstore.Disk, groups *group.Coordinator, txns *txn.Coordinator) {
	fsync := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "idem_log_fsync_seconds",
		Help: "Time fsync(2) of a log's active segment took in the group commit, over every log (partitions and coordinator state logs).",
		// 50µs … ~6.7s
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
	})
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "idem_log_fsync_batch_bytes",
		Help: "Bytes one group-commit fsync made durable: what the appends it covered wrote since the previous fsync of that log.",
		// 128 B … 128 MiB
		Buckets: prometheus.ExponentialBuckets(128, 4, 11),
	})
	files := disk.Files()
	openFiles := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "idem_log_open_files",
		Help: "Segment files open now, over every log of the data directory; idem.log.open.files.max bounds the idle ones.",
	}, func() float64 { return float64(files.Open()) })
	fileOpens := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "idem_log_file_opens_total",
		Help: "Segment files opened: created, or reopened after the open-file limit closed them; a fast rise means idem.log.open.files.max is too low for the partitions in use.",
	}, func() float64 { return float64(files.Opens()) })
	fsSyncs := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "idem_log_filesystem_syncs_total",
		Help: "syncfs(2) calls the group commit made for logs that needed an fsync while idem.log.sync.solo.max others ran.",
	}, func() float64 { n, _ := disk.FileSystemSyncs(); return float64(n) })
	batched := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "idem_log_filesystem_synced_logs_total",
		Help: "Log fsyncs that a syncfs(2) stood in for (over idem_log_filesystem_syncs_total: logs per file-system sync).",
	}, func() float64 { _, n := disk.FileSystemSyncs(); return float64(n) })
	b.reg.MustRegister(fsync, batch, openFiles, fileOpens, fsSyncs, batched, topicCollector{parts}, txnCollector{txns}, &groupCollector{groups: groups, parts: parts, limit: maxLagSeries})
	disk.ObserveSyncs(func(took time.Duration, bytes int64) {
		fsync.Observe(took.Seconds())
		batch.Observe(float64(bytes))
	})
}

var (
	producedBytesDesc   = prometheus.NewDesc("idem_topic_produced_bytes_total", "Record batch bytes appended to the topic by Produce (duplicates and transaction markers not counted).", []string{"topic"}, nil)
	producedRecordsDesc = prometheus.NewDesc("idem_topic_produced_records_total", "Records appended to the topic by Produce (duplicates and transaction markers not counted).", []string{"topic"}, nil)
	fetchedBytesDesc    = prometheus.NewDesc("idem_topic_fetched_bytes_total", "Record batch bytes sent to consumers in Fetch answers (not share fetches).", []string{"topic"}, nil)
	fetchedRecordsDesc  = prometheus.NewDesc("idem_topic_fetched_records_total", "Records in the data batches sent to consumers in Fetch answers (transaction markers and share fetches not counted; whole batches, so a consumer that skips the records before its offset still counts them).", []string{"topic"}, nil)
)

// topicCollector sums the partitions' traffic counters per topic. The
// counters live in the partition objects, so a deleted topic's series go
// with it, and the produce path pays one atomic add, no label lookup. A
// counter starts from 0 when its partition is reopened (a restart).
type topicCollector struct{ m *topics.Manager }

func (topicCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- producedBytesDesc
	ch <- producedRecordsDesc
	ch <- fetchedBytesDesc
	ch <- fetchedRecordsDesc
}

func (c topicCollector) Collect(ch chan<- prometheus.Metric) {
	type traffic struct{ pb, pr, fb, fr int64 }
	sums := map[string]traffic{}
	for _, p := range c.m.All() {
		pb, pr, fb, fr := p.Traffic()
		t := sums[p.Topic()]
		t.pb, t.pr, t.fb, t.fr = t.pb+pb, t.pr+pr, t.fb+fb, t.fr+fr
		sums[p.Topic()] = t
	}
	for topic, t := range sums {
		ch <- prometheus.MustNewConstMetric(producedBytesDesc, prometheus.CounterValue, float64(t.pb), topic)
		ch <- prometheus.MustNewConstMetric(producedRecordsDesc, prometheus.CounterValue, float64(t.pr), topic)
		ch <- prometheus.MustNewConstMetric(fetchedBytesDesc, prometheus.CounterValue, float64(t.fb), topic)
		ch <- prometheus.MustNewConstMetric(fetchedRecordsDesc, prometheus.CounterValue, float64(t.fr), topic)
	}
}

var (
	txnsDesc   = prometheus.NewDesc("idem_transactions_total", "Transactions by outcome: begun, committed, aborted (by EndTxn, or by a new producer instance), timed_out (aborted by the coordinator after transaction.timeout.ms).", []string{"outcome"}, nil)
	fencedDesc = prometheus.NewDesc("idem_producers_fenced_total", "Transactional requests refused with PRODUCER_FENCED: a newer instance of the producer (or a timeout abort) bumped its epoch.", nil, nil)
)

type txnCollector struct{ c *txn.Coordinator }

func (txnCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- txnsDesc
	ch <- fencedDesc
}

func (c txnCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.c.Stats()
	for _, o := range []struct {
		name string
		n    int64
	}{{"begun", s.Begun}, {"committed", s.Committed}, {"aborted", s.Aborted}, {"timed_out", s.TimedOut}} {
		ch <- prometheus.MustNewConstMetric(txnsDesc, prometheus.CounterValue, float64(o.n), o.name)
	}
	ch <- prometheus.MustNewConstMetric(fencedDesc, prometheus.CounterValue, float64(s.Fenced))
}

var (
	lagDesc        = prometheus.NewDesc("idem_consumer_group_lag", "High watermark minus the group's committed offset, per partition with a committed offset (at most 10,000 series: see idem_consumer_group_lag_skipped).", []string{"group", "topic", "partition"}, nil)
	lagSkippedDesc = prometheus.NewDesc("idem_consumer_group_lag_skipped", "Committed offsets left out of idem_consumer_group_lag at this scrape because of its 10,000-series bound.", nil, nil)
	rebalancesDesc = prometheus.NewDesc("idem_consumer_group_rebalances_total", "Rebalances of the group since the broker loaded it: completed joins (classic protocol) and group epoch bumps (consumer protocol).", []string{"group"}, nil)
)

// groupCollector computes consumer-group lag at scrape time from the
// committed offsets and the partitions' high watermarks.
type groupCollector struct {
	groups *group.Coordinator
	parts  *topics.Manager
	limit  int
}

func (*groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- lagSkippedDesc
	ch <- rebalancesDesc
}

func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	offsets, skipped, rebalances := c.groups.Snapshot(c.limit)
	if len(offsets) > 0 {
		type tp struct {
			topic string
			index int32
		}
		// Only open partitions: a scrape never opens one.
		hwm := map[tp]int64{}
		for _, p := range c.parts.All() {
			hwm[tp{p.Topic(), p.Index()}] = p.HighWatermark()
		}
		for _, o := range offsets {
			h, ok := hwm[tp{o.Topic, o.Partition}]
			if !ok || o.Offset < 0 {
				continue
			}
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(max(h-o.Offset, 0)),
				o.Group, o.Topic, strconv.Itoa(int(o.Partition)))
		}
	}
	ch <- prometheus.MustNewConstMetric(lagSkippedDesc, prometheus.GaugeValue, float64(skipped))
	for _, r := range rebalances {
		ch <- prometheus.MustNewConstMetric(rebalancesDesc, prometheus.CounterValue, float64(r.Count), r.Group)
	}
}
