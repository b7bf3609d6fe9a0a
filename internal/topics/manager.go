package topics

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
)

// Manager owns every open partition and keeps them in step with the catalog:
// creating a topic creates its logs, deleting one removes them.
//
// Data layout under the data directory:
//
//	topics/<topic id hex>/<partition>/        the partition's log (logstore)
//	topics/<topic id hex>/<partition>.producers   producer-state snapshot
//
// Directories are named by topic id, not name, so a topic deleted and created
// again never sees the old data, even if a crash interrupted the deletion;
// directories of ids no longer in the catalog are removed on open.
type Manager struct {
	fs  logstore.FS
	dir string // <data>/topics
	cat *catalog.Catalog
	cfg *config.Config
	now func() time.Time
	log *slog.Logger

	// mu guards topics; it is never held across an fsync of a partition
	// append, only while partitions are opened or closed.
	mu     sync.RWMutex
	topics map[string]*topicParts
	closed bool

	// Counters for metrics.
	Duplicates  atomic.Int64 // idempotent retries answered from producer state
	OutOfOrders atomic.Int64 // OUT_OF_ORDER_SEQUENCE_NUMBER answers

	quit chan struct{}
	done chan struct{}
}

type topicParts struct {
	topic catalog.Topic
	parts []*partition.Partition
}

// ManagerConfig configures OpenManager.
type ManagerConfig struct {
	FS      logstore.FS
	DataDir string
	Catalog *catalog.Catalog
	Config  *config.Config
	Now     func() time.Time
	Logger  *slog.Logger
	// RetentionInterval is how often retention runs
	// (log.retention.check.interval.ms); 0 = 5 minutes.
	RetentionInterval time.Duration
	// SnapshotInterval is how often changed producer state is snapshotted;
	// it bounds how much log a restart replays. 0 = 10 seconds.
	SnapshotInterval time.Duration
}

// OpenManager opens every partition of every topic in the catalog.
func OpenManager(mc ManagerConfig) (*Manager, error) {
	if mc.Now == nil {
		mc.Now = time.Now
	}
	if mc.Logger == nil {
		mc.Logger = slog.New(slog.DiscardHandler)
	}
	if mc.RetentionInterval <= 0 {
		mc.RetentionInterval = 5 * time.Minute
	}
	if mc.SnapshotInterval <= 0 {
		mc.SnapshotInterval = 10 * time.Second
	}
	m := &Manager{
		fs: mc.FS, dir: path.Join(mc.DataDir, "topics"), cat: mc.Catalog, cfg: mc.Config,
		now: mc.Now, log: mc.Logger,
		topics: map[string]*topicParts{},
		quit:   make(chan struct{}), done: make(chan struct{}),
	}
	if err := m.fs.MkdirAll(m.dir); err != nil {
		return nil, fmt.Errorf("partitions: %w", err)
	}
	live := map[string]bool{}
	for _, t := range m.cat.List() {
		live[t.ID.Hex()] = true
		tp := &topicParts{topic: t}
		for i := int32(0); i < t.Partitions; i++ {
			p, err := m.openPartition(t, i)
			if err != nil {
				m.closeAll()
				return nil, err
			}
			tp.parts = append(tp.parts, p)
		}
		m.topics[t.Name] = tp
	}
	if names, err := m.fs.ReadDir(m.dir); err == nil {
		if m.cat.Created() && len(names) > 0 {
			// Topic data without a catalog: the catalog was lost, not the
			// topics deleted. Removing the "orphans" would destroy every
			// record; stop and let an operator decide.
			m.closeAll()
			return nil, fmt.Errorf("partitions: %s holds data of %d topics but the topic catalog is missing; refusing to start (restore catalog.json, or remove %s to start empty)", m.dir, len(names), m.dir)
		}
		for _, n := range names {
			if !live[n] {
				m.log.Info("removing data of a deleted topic", "dir", path.Join(m.dir, n))
				if err := m.fs.RemoveAll(path.Join(m.dir, n)); err != nil {
					m.log.Warn("could not remove deleted topic data", "dir", path.Join(m.dir, n), "err", err)
				}
			}
		}
	}
	go m.maintain(mc.SnapshotInterval, mc.RetentionInterval)
	return m, nil
}

// LogConfig is the logstore configuration of a topic: broker defaults with the
// topic's overrides applied.
func (m *Manager) LogConfig(t catalog.Topic) logstore.Config {
	get := func(topicName, brokerName string) int64 {
		if v, ok := t.Configs[topicName]; ok {
			n, _ := strconv.ParseInt(v, 10, 64) // validated when the topic was created
			return n
		}
		switch brokerName {
		case "log.retention.ms":
			return m.cfg.RetentionMs()
		case "log.roll.ms":
			return m.cfg.RollMs()
		}
		return m.cfg.Int(brokerName)
	}
	// logstore reads 0 as "default" (retention time) or "unlimited"
	// (retention bytes); Kafka's 0 means "keep nothing older/larger", so the
	// smallest positive value stands in for it.
	rt := get("retention.ms", "log.retention.ms")
	rtime := time.Duration(rt) * time.Millisecond
	switch {
	case rt < 0:
		rtime = -1
	case rt == 0:
		rtime = time.Nanosecond
	}
	rbytes := get("retention.bytes", "log.retention.bytes")
	if rbytes == 0 {
		rbytes = 1
	}
	return logstore.Config{
		SegmentBytes:       get("segment.bytes", "log.segment.bytes"),
		RollInterval:       time.Duration(get("segment.ms", "log.roll.ms")) * time.Millisecond,
		RetentionBytes:     rbytes,
		RetentionTime:      rtime,
		IndexIntervalBytes: int(m.cfg.Int("log.index.interval.bytes")),
		Now:                m.now,
		Logger:             m.log,
	}
}

// logAppendTime reports whether the topic stamps batches with the broker's
// clock (message.timestamp.type, else log.message.timestamp.type).
func (m *Manager) logAppendTime(t catalog.Topic) bool {
	if v, ok := t.Configs["message.timestamp.type"]; ok {
		return v == "LogAppendTime"
	}
	return m.cfg.String("log.message.timestamp.type") == "LogAppendTime"
}

func (m *Manager) openPartition(t catalog.Topic, i int32) (*partition.Partition, error) {
	base := path.Join(m.dir, t.ID.Hex())
	return partition.Open(partition.Config{
		Topic: t.Name, Index: i, FS: m.fs,
		Dir:                path.Join(base, strconv.Itoa(int(i))),
		SnapshotPath:       path.Join(base, strconv.Itoa(int(i))+".producers"),
		Log:                m.LogConfig(t),
		LogAppendTime:      m.logAppendTime(t),
		ProducerExpiration: m.cfg.Millis("producer.id.expiration.ms"),
		Now:                m.now,
		Logger:             m.log,
	})
}

// Partition returns an open partition.
func (m *Manager) Partition(topic string, index int32) (*partition.Partition, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	tp := m.topics[topic]
	if tp == nil || index < 0 || int(index) >= len(tp.parts) {
		return nil, false
	}
	return tp.parts[index], true
}

// Exists reports whether topic/index exists.
func (m *Manager) Exists(topic string, index int32) bool {
	_, ok := m.Partition(topic, index)
	return ok
}

// Topic returns the catalog entry of an open topic.
func (m *Manager) Topic(name string) (catalog.Topic, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	tp := m.topics[name]
	if tp == nil {
		return catalog.Topic{}, false
	}
	return tp.topic, true
}

// Topics returns every topic, sorted by name.
func (m *Manager) Topics() []catalog.Topic { return m.cat.List() }

// Catalog returns the topic catalog.
func (m *Manager) Catalog() *catalog.Catalog { return m.cat }

// ErrManagerClosed is returned after Close.
var ErrManagerClosed = errors.New("topics: manager closed")

// CreateTopic records a topic in the catalog and opens its partitions.
func (m *Manager) CreateTopic(name string, partitions int32, configs map[string]string) (catalog.Topic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return catalog.Topic{}, ErrManagerClosed
	}
	t, err := m.cat.Create(name, partitions, configs)
	if err != nil {
		return catalog.Topic{}, err
	}
	tp := &topicParts{topic: t}
	for i := int32(0); i < partitions; i++ {
		p, err := m.openPartition(t, i)
		if err != nil {
			// Take the whole topic back so the catalog and the open
			// partitions agree (a half-created topic would be listed but
			// unusable).
			for _, q := range tp.parts {
				q.Close()
			}
			if _, derr := m.cat.Delete(name); derr != nil {
				m.log.Error("could not roll back a failed topic creation", "topic", name, "err", derr)
			}
			m.fs.RemoveAll(path.Join(m.dir, t.ID.Hex()))
			return catalog.Topic{}, err
		}
		tp.parts = append(tp.parts, p)
	}
	m.topics[name] = tp
	m.log.Info("created topic", "topic", name, "partitions", partitions, "id", t.ID.String())
	return t, nil
}

// DeleteTopic removes a topic from the catalog, closes its partitions and
// deletes their data.
func (m *Manager) DeleteTopic(name string) (catalog.Topic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return catalog.Topic{}, ErrManagerClosed
	}
	t, err := m.cat.Delete(name)
	if err != nil {
		return catalog.Topic{}, err
	}
	if tp := m.topics[name]; tp != nil {
		for _, p := range tp.parts {
			p.Close()
		}
	}
	delete(m.topics, name)
	if err := m.fs.RemoveAll(path.Join(m.dir, t.ID.Hex())); err != nil {
		// Already gone from the catalog; the next open removes the leftovers.
		m.log.Warn("could not remove topic data", "topic", name, "err", err)
	}
	m.log.Info("deleted topic", "topic", name, "id", t.ID.String())
	return t, nil
}

// AddPartitions grows a topic to total partitions.
func (m *Manager) AddPartitions(name string, total int32, validateOnly bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrManagerClosed
	}
	t, err := m.cat.SetPartitions(name, total, validateOnly)
	if err != nil || validateOnly {
		return err
	}
	tp := m.topics[name]
	for i := int32(len(tp.parts)); i < total; i++ {
		p, err := m.openPartition(t, i)
		if err != nil {
			return err
		}
		tp.parts = append(tp.parts, p)
	}
	tp.topic = t
	return nil
}

// maintain snapshots producer state and runs retention periodically.
func (m *Manager) maintain(snapEvery, retentionEvery time.Duration) {
	defer close(m.done)
	t := time.NewTicker(min(snapEvery, retentionEvery))
	defer t.Stop()
	lastRetention := time.Now()
	for {
		select {
		case <-m.quit:
			return
		case <-t.C:
		}
		m.mu.RLock()
		var parts []*partition.Partition
		for _, tp := range m.topics {
			parts = append(parts, tp.parts...)
		}
		m.mu.RUnlock()
		retention := time.Since(lastRetention) >= retentionEvery
		if retention {
			lastRetention = time.Now()
		}
		for _, p := range parts {
			if retention {
				if err := p.EnforceRetention(); err != nil && !errors.Is(err, logstore.ErrClosed) {
					m.log.Warn("retention failed", "topic", p.Topic(), "partition", p.Index(), "err", err)
				}
			}
			if err := p.Snapshot(); err != nil {
				m.log.Warn("producer snapshot failed", "err", err)
			}
		}
	}
}

// MaxProducerID is the largest producer id with state in any partition, or
// -1 when there is none.
func (m *Manager) MaxProducerID() int64 {
	max := int64(-1)
	for _, p := range m.All() {
		for _, st := range p.ProducerStates() {
			if st.ProducerID > max {
				max = st.ProducerID
			}
		}
	}
	return max
}

// All returns every open partition.
func (m *Manager) All() []*partition.Partition {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*partition.Partition
	for _, tp := range m.topics {
		out = append(out, tp.parts...)
	}
	return out
}

func (m *Manager) closeAll() error {
	var errs []error
	for _, tp := range m.topics {
		for _, p := range tp.parts {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// Close stops maintenance and closes every partition (each fsyncs its log and
// snapshots its producer state).
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	close(m.quit)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closeAll()
}
