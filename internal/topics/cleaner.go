package topics

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
)

// Log compaction in the background (docs/compaction.md): one goroutine,
// owned by the Manager and joined by Close, cleans one partition at a time
// with one logstore.Cleaner, so the key map (log.cleaner.dedupe.buffer.size)
// is the only large memory it holds and log.cleaner.io.max.bytes.per.second
// bounds its I/O; its thread runs at the lowest CPU and I/O priority. Like
// Kafka's LogCleanerManager it picks the partition with
// the highest dirty ratio among those above min.cleanable.dirty.ratio, those
// whose oldest uncleaned record is older than max.compaction.lag.ms, and
// those with a tombstone or marker whose delete horizon has passed; with
// nothing to do it sleeps log.cleaner.backoff.ms.

// compaction is a topic's compaction policy.
type compaction struct {
	compact, delete  bool
	minLag, maxLag   time.Duration
	deleteRetention  time.Duration
	minCleanableRate float64
}

// cleanupPolicy parses a cleanup.policy list ("compact", "delete",
// "compact,delete").
func cleanupPolicy(v string) (compact, delete bool) {
	for _, p := range strings.Split(v, ",") {
		switch strings.TrimSpace(p) {
		case "compact":
			compact = true
		case "delete":
			delete = true
		}
	}
	return compact, delete
}

// topicValue is a topic's override of a property, else the broker's value.
func (m *Manager) topicValue(t catalog.Topic, topicName, brokerName string) string {
	if v, ok := t.Configs[topicName]; ok {
		return v
	}
	return m.cfg.String(brokerName)
}

// Compacted reports whether a topic's cleanup.policy includes compact: its
// producers must then give every record a key.
func (m *Manager) Compacted(t catalog.Topic) bool {
	c, _ := cleanupPolicy(m.topicValue(t, "cleanup.policy", "log.cleanup.policy"))
	return c
}

// CompactOnly reports whether a topic's cleanup.policy is compact without
// delete: its records go only by compaction, never by retention or
// DeleteRecords (Kafka answers POLICY_VIOLATION there).
func (m *Manager) CompactOnly(t catalog.Topic) bool {
	c, d := cleanupPolicy(m.topicValue(t, "cleanup.policy", "log.cleanup.policy"))
	return c && !d
}

// compactionOf returns the compaction policy of a topic.
func (m *Manager) compactionOf(t catalog.Topic) compaction {
	millis := func(topicName, brokerName string) time.Duration {
		n, _ := strconv.ParseInt(m.topicValue(t, topicName, brokerName), 10, 64) // validated when set
		if n > math.MaxInt64/int64(time.Millisecond) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(n) * time.Millisecond
	}
	c := compaction{
		minLag:          millis("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
		maxLag:          millis("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
		deleteRetention: millis("delete.retention.ms", "log.cleaner.delete.retention.ms"),
	}
	c.compact, c.delete = cleanupPolicy(m.topicValue(t, "cleanup.policy", "log.cleanup.policy"))
	c.minCleanableRate, _ = strconv.ParseFloat(m.topicValue(t, "min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio"), 64)
	return c
}

// startCleaner starts the cleaner goroutine, if log.cleaner.enable.
func (m *Manager) startCleaner() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cleanCancel = cancel
	if !m.cfg.Bool("log.cleaner.enable") {
		close(m.cleanerDone)
		return
	}
	c := logstore.NewCleaner(logstore.CleanerConfig{
		DedupeBufferBytes: m.cfg.Int("log.cleaner.dedupe.buffer.size"),
		LoadFactor:        m.cfg.Float("log.cleaner.io.buffer.load.factor"),
		IOBufferBytes:     int(m.cfg.Int("log.cleaner.io.buffer.size")),
		IOBytesPerSecond:  m.cfg.Float("log.cleaner.io.max.bytes.per.second"),
	})
	go m.runCleaner(ctx, c, m.cfg.Millis("log.cleaner.backoff.ms"))
}

func (m *Manager) runCleaner(ctx context.Context, c *logstore.Cleaner, backoff time.Duration) {
	defer close(m.cleanerDone)
	// Cleaning is background work: its thread yields the processor and the
	// disk to everything else (producers first), and dies with it.
	if err := logstore.BackgroundPriority(); err != nil {
		m.log.Debug("log cleaner runs at normal priority", "err", err)
	}
	failed := map[*partition.Partition]time.Time{} // partitions to leave alone until then
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		p, comp, ok := m.filthiest(failed)
		if !ok {
			timer.Reset(max(backoff, time.Millisecond))
			continue
		}
		began := m.now()
		// The clean reaches only what the producer snapshot covers: take
		// one first, at normal priority (it holds the partition's append
		// lock while it waits for an fsync; this thread must not).
		snapped := make(chan error, 1)
		go func() { snapped <- p.Snapshot() }()
		if err := <-snapped; err != nil {
			m.log.Warn("producer snapshot before cleaning failed", "topic", p.Topic(), "partition", p.Index(), "err", err)
		}
		stats, err := p.Clean(ctx, c, partition.CleanConfig{MinCompactionLag: comp.minLag, DeleteRetention: comp.deleteRetention})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !errors.Is(err, logstore.ErrClosed) && !errors.Is(err, partition.ErrClosed) {
				m.log.Warn("log cleaning failed; will retry", "topic", p.Topic(), "partition", p.Index(), "err", err)
			}
			failed[p] = m.now().Add(max(backoff, time.Second))
		default:
			delete(failed, p)
			m.log.Debug("cleaned log", "topic", p.Topic(), "partition", p.Index(),
				"read_bytes", stats.BytesRead, "written_bytes", stats.BytesWritten, "records_read", stats.RecordsRead, "records_kept", stats.RecordsKept,
				"keys", stats.Keys, "segments_replaced", stats.SegmentsReplaced, "cleaned_to", stats.CleanedTo, "took", m.now().Sub(began).Round(time.Millisecond))
		}
		timer.Reset(0)
	}
}

// filthiest returns the partition most worth cleaning now, if any.
func (m *Manager) filthiest(failed map[*partition.Partition]time.Time) (*partition.Partition, compaction, bool) {
	now := m.now()
	var best *partition.Partition
	var bestComp compaction
	bestRatio := -1.0
	m.mu.RLock()
	topics := make([]topicParts, 0, len(m.topics))
	for _, tp := range m.topics {
		topics = append(topics, topicParts{topic: tp.topic, parts: append([]*slot(nil), tp.parts...)})
	}
	m.mu.RUnlock()
	for _, tp := range topics {
		comp := m.compactionOf(tp.topic)
		if !comp.compact {
			continue
		}
		for _, s := range tp.parts {
			p := onlinePartition(s)
			if p == nil || now.Before(failed[p]) {
				continue
			}
			st := p.CleaningState(comp.minLag)
			total := st.CleanBytes + st.DirtyBytes
			if total == 0 {
				continue
			}
			ratio := float64(st.DirtyBytes) / float64(total)
			overdue := st.DirtyBytes > 0 && st.FirstDirtyTime >= 0 && comp.maxLag < time.Duration(math.MaxInt64) &&
				st.FirstDirtyTime < now.Add(-comp.maxLag).UnixMilli()
			if (ratio > comp.minCleanableRate || overdue || st.HorizonDue) && ratio > bestRatio {
				best, bestComp, bestRatio = p, comp, ratio
			}
		}
	}
	return best, bestComp, best != nil
}

// onlinePartition returns a slot's partition if it is open and healthy.
func onlinePartition(s *slot) *partition.Partition {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != online || s.p.Err() != nil {
		return nil
	}
	return s.p
}
