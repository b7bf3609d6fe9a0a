package share

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stats counts what share groups do, for /metrics and `idem share`. The
// counters are atomics so that Stats needs no lock.
type stats struct {
	acquired, accepted, released, rejected, renewed atomic.Int64
	lockExpiries, archived, deadLettered            atomic.Int64
	// deliveries[i] counts records handed out for the (i+1)th time; the
	// last bucket holds every later delivery.
	deliveries [deliveryBuckets]atomic.Int64
}

const deliveryBuckets = 10

func (s *stats) init() {}

func (s *stats) observeDelivery(count int16, n int64) {
	i := min(max(int(count)-1, 0), deliveryBuckets-1)
	s.deliveries[i].Add(n)
}

// Stats is a snapshot of the counters.
type Stats struct {
	Acquired, Accepted, Released, Rejected, Renewed int64
	LockExpiries, Archived, DeadLettered            int64
	// Deliveries[i] counts records handed out for the (i+1)th time (the
	// last entry: that many times or more).
	Deliveries [deliveryBuckets]int64
}

// Redelivered is how many records were handed out again: every delivery
// after a record's first.
func (s Stats) Redelivered() int64 {
	var n int64
	for _, d := range s.Deliveries[1:] {
		n += d
	}
	return n
}

// Stats returns the counters since the coordinator started.
func (c *Coordinator) Stats() Stats {
	s := &c.stats
	out := Stats{
		Acquired: s.acquired.Load(), Accepted: s.accepted.Load(), Released: s.released.Load(),
		Rejected: s.rejected.Load(), Renewed: s.renewed.Load(), LockExpiries: s.lockExpiries.Load(),
		Archived: s.archived.Load(), DeadLettered: s.deadLettered.Load(),
	}
	for i := range s.deliveries {
		out.Deliveries[i] = s.deliveries[i].Load()
	}
	return out
}

var (
	countersDesc = prometheus.NewDesc("idem_share_records_total",
		"Share-group record events: acquired (handed out), accepted, released, rejected, renewed, lock_expired, archived, dead_lettered, redelivered (handed out again: acquired with a delivery count above 1).",
		[]string{"event"}, nil)
	deliveriesDesc = prometheus.NewDesc("idem_share_delivery_count",
		"Histogram of the delivery count records are handed out with (1 = first delivery).", nil, nil)
	groupsDesc   = prometheus.NewDesc("idem_share_groups", "Share groups known to the coordinator.", nil, nil)
	membersDesc  = prometheus.NewDesc("idem_share_members", "Share-group members, summed over groups.", nil, nil)
	sessionsDesc = prometheus.NewDesc("idem_share_sessions", "Open share sessions.", nil, nil)
	inFlightDesc = prometheus.NewDesc("idem_share_in_flight_records",
		"Records in share partitions' in-flight windows by state (acquired, available), summed over share partitions.", []string{"state"}, nil)
	dlqPendingDesc = prometheus.NewDesc("idem_share_dead_letters_pending", "Records archived for a dead-letter topic whose copy is not yet durable there.", nil, nil)

	// Per share partition (what `idem share describe` shows).
	partLabels     = []string{"group", "topic", "partition"}
	partStartDesc  = prometheus.NewDesc("idem_share_partition_start_offset", "Share-partition start offset: every record below it is acknowledged or archived.", partLabels, nil)
	partLagDesc    = prometheus.NewDesc("idem_share_partition_lag", "Records of the share partition not yet acknowledged or archived (KIP-1226 lag).", partLabels, nil)
	partRecsDesc   = prometheus.NewDesc("idem_share_partition_records", "Records in the share partition's in-flight window by state.", append(partLabels, "state"), nil)
	partDelivDesc  = prometheus.NewDesc("idem_share_partition_in_flight_deliveries", "Acquired or available records of the share partition's in-flight window by how often they were delivered.", append(partLabels, "deliveries"), nil)
	memberHeldDesc = prometheus.NewDesc("idem_share_member_acquired_records", "Records a member holds now.", []string{"group", "member"}, nil)
)

// Collector returns a Prometheus collector of the coordinator's metrics.
func (c *Coordinator) Collector() prometheus.Collector { return collector{c} }

type collector struct{ c *Coordinator }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{countersDesc, deliveriesDesc, groupsDesc, membersDesc, sessionsDesc, inFlightDesc, dlqPendingDesc,
		partStartDesc, partLagDesc, partRecsDesc, partDelivDesc, memberHeldDesc} {
		ch <- d
	}
}

func (col collector) Collect(ch chan<- prometheus.Metric) {
	s := col.c.Stats()
	for _, e := range []struct {
		name string
		v    int64
	}{
		{"acquired", s.Acquired}, {"accepted", s.Accepted}, {"released", s.Released}, {"rejected", s.Rejected},
		{"renewed", s.Renewed}, {"lock_expired", s.LockExpiries}, {"archived", s.Archived},
		{"dead_lettered", s.DeadLettered}, {"redelivered", s.Redelivered()},
	} {
		ch <- prometheus.MustNewConstMetric(countersDesc, prometheus.CounterValue, float64(e.v), e.name)
	}
	buckets := map[float64]uint64{}
	var total uint64
	var sum float64
	for i, n := range s.Deliveries {
		total += uint64(n)
		sum += float64(n) * float64(i+1)
		if i < deliveryBuckets-1 {
			buckets[float64(i+1)] = total
		}
	}
	ch <- prometheus.MustNewConstHistogram(deliveriesDesc, total, sum, buckets)

	c := col.c
	var parts []struct {
		group string
		po    PartitionOffsets
	}
	c.mu.Lock()
	groups, members, sessions, pending := len(c.groups), 0, len(c.sessions), len(c.dlq.entries)
	var acquired, available int
	for _, g := range c.groups {
		members += len(g.members)
		for _, sp := range g.sps {
			a, v := sp.inFlight()
			acquired += a
			available += v
			po := PartitionOffsets{Topic: sp.topic, Partition: sp.tp.partition, HighWatermark: -1}
			if p, err := c.cfg.Topics.Partition(sp.topic, sp.tp.partition); err == nil {
				po.HighWatermark = p.HighWatermark()
			}
			c.fillOffsetsLocked(sp, &po)
			parts = append(parts, struct {
				group string
				po    PartitionOffsets
			}{g.id, po})
		}
	}
	c.mu.Unlock()
	held := map[[2]string]int{}
	for _, p := range parts {
		l := []string{p.group, p.po.Topic, strconv.Itoa(int(p.po.Partition))}
		ch <- prometheus.MustNewConstMetric(partStartDesc, prometheus.GaugeValue, float64(p.po.StartOffset), l...)
		if p.po.Lag >= 0 {
			ch <- prometheus.MustNewConstMetric(partLagDesc, prometheus.GaugeValue, float64(p.po.Lag), l...)
		}
		for _, st := range []struct {
			name string
			n    int
		}{{"acquired", p.po.Acquired}, {"available", p.po.Available}, {"acknowledged", p.po.Acknowledged}, {"archived", p.po.Archived + p.po.ArchivingForDLQ}} {
			ch <- prometheus.MustNewConstMetric(partRecsDesc, prometheus.GaugeValue, float64(st.n), append(l, st.name)...)
		}
		for count, n := range p.po.DeliveryCounts {
			ch <- prometheus.MustNewConstMetric(partDelivDesc, prometheus.GaugeValue, float64(n), append(l, strconv.Itoa(int(count)))...)
		}
		for m, n := range p.po.Holders {
			held[[2]string{p.group, m}] += n
		}
	}
	for k, n := range held {
		ch <- prometheus.MustNewConstMetric(memberHeldDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	ch <- prometheus.MustNewConstMetric(groupsDesc, prometheus.GaugeValue, float64(groups))
	ch <- prometheus.MustNewConstMetric(membersDesc, prometheus.GaugeValue, float64(members))
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(sessions))
	ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(acquired), "acquired")
	ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(available), "available")
	ch <- prometheus.MustNewConstMetric(dlqPendingDesc, prometheus.GaugeValue, float64(pending))
}
