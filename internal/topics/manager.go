package topics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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

// Manager owns every partition and keeps them in step with the catalog:
// creating a topic creates its logs, deleting one removes them.
//
// Data layout under the data directory:
//
//	topics/<topic id hex>/topic.json          the topic's catalog entry, for recovery
//	topics/<topic id hex>/<partition>/        the partition's log (logstore)
//	topics/<topic id hex>/<partition>.producers   producer-state snapshot
//
// Directories are named by topic id, not name, so a topic deleted and created
// again never sees the old data. Data is removed only for a deletion the
// catalog recorded (a tombstone); a directory the catalog neither lists nor
// remembers deleting is an orphan: kept, reported, and left for the operator.
//
// After a start, partitions are opened in the background by a few loaders,
// so the Kafka port can open at once; a request for a partition still queued
// opens it on the spot. A partition whose storage fails to open is offline:
// it answers ErrOffline and everything else is served.
type Manager struct {
	fs   logstore.FS
	dir  string // <data>/topics
	cat  *catalog.Catalog
	cfg  *config.Config
	now  func() time.Time
	log  *slog.Logger
	data string // the data directory, for messages to the operator
	disk *logstore.Disk

	// mu guards topics, orphans and closed; it is never held across an
	// fsync of a partition append, only while topics are created, deleted
	// or grown.
	mu      sync.RWMutex
	topics  map[string]*topicParts
	orphans []Orphan
	closed  bool

	// Counters for metrics.
	Duplicates  atomic.Int64 // idempotent retries answered from producer state
	OutOfOrders atomic.Int64 // OUT_OF_ORDER_SEQUENCE_NUMBER answers

	loaders sync.WaitGroup
	workers int           // how many partitions open (at a start) or close at once
	loaded  chan struct{} // closed when every partition of the start has settled
	quit    chan struct{}
	done    chan struct{}

	// The log cleaner (cleaner.go): cleanCancel stops it, cleanerDone is
	// closed when it has.
	cleanCancel context.CancelFunc
	cleanerDone chan struct{}
}

type topicParts struct {
	topic catalog.Topic
	parts []*slot
}

// Orphan is a topic directory that the catalog neither lists nor remembers
// deleting. It is never removed automatically.
type Orphan struct {
	Dir   string // path of the directory
	ID    string // topic id (hex), the directory's name
	Name  string // from its topic.json, "" when unreadable
	Cause string // why it is not served
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
	// SnapshotInterval is how often changed producer state is considered
	// for a snapshot: written when 16 MiB were appended since the last one
	// or at the latest after six intervals. It bounds how much log a start
	// after a crash replays. 0 = 10 seconds.
	SnapshotInterval time.Duration
	// Loaders is how many partitions open at once after a start (and close
	// at once when the manager closes, at least 16); 0 = 4.
	Loaders int
	// Disk watches free space and holds the reserve that metadata writes
	// draw on when the disk is full (nil = none).
	Disk *logstore.Disk
}

// OpenManager checks the data directory against the catalog and starts
// opening every partition in the background (WaitLoaded waits for them).
//
// It refuses, changing nothing on disk, when the catalog is missing but topic
// data exists: the operator rebuilds it with `idem storage recover-catalog`.
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
	if mc.Loaders <= 0 {
		mc.Loaders = 4
	}
	m := &Manager{
		fs: mc.FS, dir: path.Join(mc.DataDir, "topics"), cat: mc.Catalog, cfg: mc.Config,
		now: mc.Now, log: mc.Logger, data: mc.DataDir, disk: mc.Disk,
		topics: map[string]*topicParts{},
		loaded: make(chan struct{}),
		quit:   make(chan struct{}), done: make(chan struct{}),
		cleanerDone: make(chan struct{}),
	}
	names, err := m.fs.ReadDir(m.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("topics: list %s: %w", m.dir, err)
	}
	if m.cat.Created() {
		if len(names) > 0 {
			// Topic data without a catalog: the catalog was lost, not the
			// topics deleted. Nothing is written or removed: the operator
			// rebuilds the catalog from the topic.json files.
			return nil, fmt.Errorf("topics: %s holds data of %d topics but the topic catalog (%s) is missing; refusing to start, nothing was changed. Rebuild the catalog from the data with `idem storage recover-catalog --data-dir %s`, or restore catalog.json from a backup", m.dir, len(names), path.Join(mc.DataDir, "catalog.json"), mc.DataDir)
		}
		if err := m.cat.Init(); err != nil {
			return nil, err
		}
	}
	if err := m.fs.MkdirAll(m.dir); err != nil {
		return nil, fmt.Errorf("topics: %w", err)
	}
	if err := m.sweep(names); err != nil {
		return nil, err
	}
	var queue []*slot
	for _, t := range m.cat.List() {
		if err := m.ensureTopicMeta(t); err != nil {
			m.log.Warn("could not record topic metadata beside its data", "topic", t.Name, "err", err)
		}
		tp := &topicParts{topic: t}
		for i := int32(0); i < t.Partitions; i++ {
			s := newSlot(t, i)
			tp.parts = append(tp.parts, s)
			queue = append(queue, s)
		}
		m.topics[t.Name] = tp
	}
	m.workers = mc.Loaders
	m.startLoaders(queue, mc.Loaders)
	go m.maintain(mc.SnapshotInterval, mc.RetentionInterval)
	m.startCleaner()
	return m, nil
}

// sweep finishes recorded deletions and reports orphans among the topic
// directories found at start.
func (m *Manager) sweep(names []string) error {
	for _, n := range names {
		dir := path.Join(m.dir, n)
		var id catalog.ID
		if err := id.UnmarshalText([]byte(n)); err != nil {
			m.addOrphan(Orphan{Dir: dir, ID: n, Cause: "not a topic id"})
			continue
		}
		if _, ok := m.cat.ByID(id); ok {
			continue
		}
		if d, ok := m.cat.Deleted(id); ok {
			m.log.Info("removing data of a deleted topic", "topic", d.Name, "id", d.ID.String(), "dir", dir)
			if err := m.fs.RemoveAll(dir); err != nil {
				m.log.Warn("could not remove deleted topic data; will retry at the next start", "dir", dir, "err", err)
				continue
			}
			m.disk.ForgetRecoveryPoints(dir)
			if err := m.cat.Forget(id); err != nil {
				m.log.Warn("could not drop the tombstone of a deleted topic", "topic", d.Name, "err", err)
			}
			continue
		}
		o := Orphan{Dir: dir, ID: n, Cause: "not in the catalog"}
		if meta, err := readTopicMeta(m.fs, dir); err == nil {
			o.Name = meta.Topic.Name
		}
		m.addOrphan(o)
	}
	return nil
}

func (m *Manager) addOrphan(o Orphan) {
	m.orphans = append(m.orphans, o)
	m.log.Warn("topic data not in the catalog is kept and not served; adopt it with `idem storage recover-catalog` or remove the directory yourself",
		"dir", o.Dir, "topic", o.Name, "cause", o.Cause, "data_dir", m.data)
}

// Orphans lists topic directories kept but not served.
func (m *Manager) Orphans() []Orphan {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]Orphan(nil), m.orphans...)
}

// ensureTopicMeta writes topic.json for a topic whose directory lacks it or
// holds an outdated copy (data written before topic.json existed).
func (m *Manager) ensureTopicMeta(t catalog.Topic) error {
	dir := path.Join(m.dir, t.ID.Hex())
	if meta, err := readTopicMeta(m.fs, dir); err == nil && sameTopic(meta.Topic, t) && meta.ClusterID == m.cat.ClusterID() {
		return nil
	}
	return m.writeTopicMeta(t)
}

// writeTopicMeta records t beside its data (drawing on the disk reserve if
// need be: deleting and creating topics must work on a full disk).
func (m *Manager) writeTopicMeta(t catalog.Topic) error {
	return m.disk.Do(func() error { return writeTopicMeta(m.fs, path.Join(m.dir, t.ID.Hex()), m.cat.ClusterID(), t) })
}

func sameTopic(a, b catalog.Topic) bool {
	if a.Name != b.Name || a.ID != b.ID || a.Partitions != b.Partitions || len(a.Configs) != len(b.Configs) {
		return false
	}
	for k, v := range a.Configs {
		if b.Configs[k] != v {
			return false
		}
	}
	return true
}

// startLoaders opens the queued slots with n goroutines and closes m.loaded
// when all have settled.
func (m *Manager) startLoaders(queue []*slot, n int) {
	next := make(chan *slot)
	var workers sync.WaitGroup
	for range n {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for s := range next {
				m.load(s)
			}
		}()
	}
	m.loaders.Add(1)
	go func() {
		defer m.loaders.Done()
		began := m.now()
	feed:
		for _, s := range queue {
			select {
			case next <- s:
			case <-m.quit:
				break feed
			}
		}
		close(next)
		workers.Wait()
		close(m.loaded)
		if off := m.Offline(); len(off) > 0 {
			m.log.Error("partitions offline after start; everything else is served", "offline", len(off), "inspect", "idem storage check --data-dir "+m.data)
		} else if len(queue) > 0 {
			m.log.Info("opened every partition", "partitions", len(queue), "took", m.now().Sub(began).Round(time.Millisecond))
		}
	}()
}

// load opens a slot's partition unless someone else already did.
func (m *Manager) load(s *slot) {
	if !s.claim() {
		return
	}
	m.open(s)
}

// open opens a claimed slot and settles it.
func (m *Manager) open(s *slot) {
	s.mu.Lock()
	t := s.topic
	s.mu.Unlock()
	p, err := m.openPartition(t, s.index)
	if err != nil {
		m.log.Error("partition offline: its storage could not be opened; serving everything else",
			"topic", s.topic.Name, "partition", s.index, "err", err,
			"inspect", "idem storage check --data-dir "+m.data)
	}
	s.settle(p, err)
}

// WaitLoaded waits until every partition present at start has been opened
// (or found offline).
func (m *Manager) WaitLoaded(ctx context.Context) error {
	select {
	case <-m.loaded:
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, s := range m.slots() {
		if _, err := s.wait(ctx); errors.Is(err, ctx.Err()) && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

func (m *Manager) slots() []*slot {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*slot
	for _, tp := range m.topics {
		out = append(out, tp.parts...)
	}
	return out
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
	roll := time.Duration(get("segment.ms", "log.roll.ms")) * time.Millisecond
	if comp := m.compactionOf(t); comp.compact {
		if !comp.delete {
			// A compact-only topic is never trimmed by time or size.
			rtime, rbytes = -1, -1
		}
		// KIP-354: the active segment is never cleaned, so it rolls by
		// max.compaction.lag.ms at the latest.
		roll = min(roll, comp.maxLag)
	}
	return logstore.Config{
		SegmentBytes:       get("segment.bytes", "log.segment.bytes"),
		RollInterval:       roll,
		RetentionBytes:     rbytes,
		RetentionTime:      rtime,
		IndexIntervalBytes: int(m.cfg.Int("log.index.interval.bytes")),
		Disk:               m.disk,
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

// Lookup returns a partition that can be served, or why it cannot be:
// ErrUnknownPartition, ErrOffline (wrapping the storage error) or
// ErrLoading. A partition still waiting for a loader after a start is
// opened on the spot, so the first request for it pays its recovery; one a
// loader is opening right now is waited for (up to lookupLoadWait), since the
// request would have paid that same open had it come first. Answering
// NOT_LEADER instead made a client that does not retry (or retries into the
// same window) fail right after a restart.
func (m *Manager) Lookup(topic string, index int32) (*partition.Partition, error) {
	s := m.slot(topic, index)
	if s == nil {
		return nil, fmt.Errorf("%w: %s-%d", ErrUnknownPartition, topic, index)
	}
	if s.claim() {
		m.open(s)
		return s.get()
	}
	p, err := s.get()
	if !errors.Is(err, ErrLoading) {
		return p, err // the common case: no timer, no context
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupLoadWait)
	defer cancel()
	p, err = s.wait(ctx)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return s.get()
	}
	return p, err
}

// lookupLoadWait bounds how long a request waits for a partition a loader is
// opening; after it the request gets ErrLoading (retriable) rather than
// holding its connection through a long recovery.
const lookupLoadWait = 10 * time.Second

// WaitPartition is Lookup that waits for a partition still loading (the
// transaction coordinator uses it to write markers after a start).
func (m *Manager) WaitPartition(ctx context.Context, topic string, index int32) (*partition.Partition, error) {
	s := m.slot(topic, index)
	if s == nil {
		return nil, fmt.Errorf("%w: %s-%d", ErrUnknownPartition, topic, index)
	}
	if s.claim() {
		m.open(s)
	}
	return s.wait(ctx)
}

func (m *Manager) slot(topic string, index int32) *slot {
	m.mu.RLock()
	defer m.mu.RUnlock()
	tp := m.topics[topic]
	if tp == nil || index < 0 || int(index) >= len(tp.parts) {
		return nil
	}
	return tp.parts[index]
}

// Partition returns a partition if it can be served.
func (m *Manager) Partition(topic string, index int32) (*partition.Partition, bool) {
	p, err := m.Lookup(topic, index)
	return p, err == nil
}

// IsOffline reports whether topic/index exists but cannot be served because
// its storage failed (it does not open a partition still loading).
func (m *Manager) IsOffline(topic string, index int32) bool {
	s := m.slot(topic, index)
	if s == nil {
		return false
	}
	st, _ := s.status()
	return st == offline
}

// Exists reports whether topic/index exists (served or not).
func (m *Manager) Exists(topic string, index int32) bool {
	return m.slot(topic, index) != nil
}

// Topic returns the catalog entry of a topic.
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
	err = m.writeTopicMeta(t)
	for i := int32(0); i < partitions && err == nil; i++ {
		var p *partition.Partition
		if p, err = m.openPartition(t, i); err == nil {
			s := newSlot(t, i)
			s.settle(p, nil)
			tp.parts = append(tp.parts, s)
		}
	}
	if err != nil {
		// Take the whole topic back so the catalog and the open partitions
		// agree (a half-created topic would be listed but unusable). The
		// catalog's tombstone covers the removal of what was written.
		for _, s := range tp.parts {
			s.close()
		}
		m.removeTopicData(t)
		return catalog.Topic{}, err
	}
	m.topics[name] = tp
	m.log.Info("created topic", "topic", name, "partitions", partitions, "id", t.ID.String())
	return t, nil
}

// removeTopicData deletes a topic from the catalog (leaving a tombstone),
// removes its directory and then drops the tombstone. A failure leaves the
// tombstone, and the next start finishes the removal.
func (m *Manager) removeTopicData(t catalog.Topic) {
	if _, ok := m.cat.Get(t.Name); ok {
		if _, err := m.cat.Delete(t.Name, m.now().UnixMilli()); err != nil {
			m.log.Error("could not delete a topic from the catalog", "topic", t.Name, "err", err)
			return
		}
	}
	if err := m.fs.RemoveAll(path.Join(m.dir, t.ID.Hex())); err != nil {
		m.log.Warn("could not remove topic data; the next start retries", "topic", t.Name, "err", err)
		return
	}
	m.disk.ForgetRecoveryPoints(path.Join(m.dir, t.ID.Hex()))
	if err := m.cat.Forget(t.ID); err != nil {
		m.log.Warn("could not drop the tombstone of a deleted topic; the next start retries", "topic", t.Name, "err", err)
	}
}

// DeleteTopic removes a topic from the catalog, closes its partitions and
// deletes their data.
func (m *Manager) DeleteTopic(name string) (catalog.Topic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return catalog.Topic{}, ErrManagerClosed
	}
	t, err := m.cat.Delete(name, m.now().UnixMilli())
	if err != nil {
		return catalog.Topic{}, err
	}
	if tp := m.topics[name]; tp != nil {
		for _, s := range tp.parts {
			s.close()
		}
	}
	delete(m.topics, name)
	m.removeTopicData(t)
	m.log.Info("deleted topic", "topic", name, "id", t.ID.String())
	return t, nil
}

// SetTopicConfigs replaces a topic's configuration overrides (AlterConfigs
// and IncrementalAlterConfigs): durable in the catalog and topic.json before
// it returns, and applied at once to the open partitions and the cleaner.
func (m *Manager) SetTopicConfigs(name string, configs map[string]string) (catalog.Topic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return catalog.Topic{}, ErrManagerClosed
	}
	t, err := m.cat.SetConfigs(name, configs)
	if err != nil {
		return catalog.Topic{}, err
	}
	tp := m.topics[name]
	if tp == nil {
		return t, nil
	}
	tp.topic = t
	if err := m.writeTopicMeta(t); err != nil {
		m.log.Warn("could not record topic metadata beside its data", "topic", name, "err", err)
	}
	logCfg, appendTime := m.LogConfig(t), m.logAppendTime(t)
	for _, s := range tp.parts {
		s.mu.Lock()
		s.topic = t
		p, online := s.p, s.state == online
		s.mu.Unlock()
		if online {
			p.Reconfigure(logCfg, appendTime)
		}
	}
	m.log.Info("altered topic configs", "topic", name, "configs", configs)
	return t, nil
}

// AddPartitions grows a topic to total partitions. A new partition whose
// storage cannot be created is recorded offline and the error returned.
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
	tp.topic = t
	if err := m.writeTopicMeta(t); err != nil {
		m.log.Warn("could not record topic metadata beside its data", "topic", name, "err", err)
	}
	var errs []error
	for i := int32(len(tp.parts)); i < total; i++ {
		s := newSlot(t, i)
		s.claim()
		m.open(s)
		if _, err := s.get(); err != nil {
			errs = append(errs, err)
		}
		tp.parts = append(tp.parts, s)
	}
	m.log.Info("added partitions", "topic", name, "partitions", total, "id", t.ID.String())
	return errors.Join(errs...)
}

// maintain snapshots producer state, runs retention and retries partitions
// that went offline for a reason that may pass (a full disk, too many open
// files, a permission an operator fixed).
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
		parts := m.All()
		retention := time.Since(lastRetention) >= retentionEvery
		if retention {
			lastRetention = time.Now()
		}
		for _, p := range parts {
			select {
			case <-m.quit:
				// A round over ten thousand partitions takes seconds; a
				// closing broker must not wait for it (Close writes every
				// partition's snapshot anyway).
				return
			default:
			}
			if retention {
				if err := p.EnforceRetention(); err != nil && !errors.Is(err, logstore.ErrClosed) {
					m.log.Warn("retention failed", "topic", p.Topic(), "partition", p.Index(), "err", err)
				}
			}
			if err := p.SnapshotIfDue(snapshotBytes, snapshotMaxAge(snapEvery)); err != nil {
				m.log.Warn("producer snapshot failed", "err", err)
			}
		}
		m.retryOffline()
		m.disk.Maintain()
	}
}

// A partition's producer state is snapshotted (at the maintenance tick,
// SnapshotInterval) once snapshotBytes were appended since its last
// snapshot, or once that snapshot is snapshotMaxAge old: busy partitions
// replay at most a tick's writes after a crash, quiet ones at most a few
// minutes of their few writes, and ten thousand quiet partitions are not
// ten thousand snapshot files written and fsynced every tick.
const snapshotBytes = 16 << 20

func snapshotMaxAge(tick time.Duration) time.Duration { return 6 * tick }

// retryOffline reopens offline partitions whose failure may have passed.
func (m *Manager) retryOffline() {
	for _, s := range m.slots() {
		if !s.retriable() {
			continue
		}
		select {
		case <-m.quit:
			return
		default:
		}
		if s.reset() {
			p, err := m.openPartition(s.topic, s.index)
			if err == nil {
				m.log.Info("partition back online", "topic", s.topic.Name, "partition", s.index)
			}
			s.settle(p, err)
		}
	}
}

// MaxProducerID is the largest producer id with state in any partition, or
// -1 when there is none. It waits for the partitions of the start to load.
func (m *Manager) MaxProducerID(ctx context.Context) (int64, error) {
	if err := m.WaitLoaded(ctx); err != nil {
		return 0, err
	}
	max := int64(-1)
	for _, p := range m.All() {
		for _, st := range p.ProducerStates() {
			if st.ProducerID > max {
				max = st.ProducerID
			}
		}
	}
	return max, nil
}

// All returns every partition that is open (healthy or poisoned).
func (m *Manager) All() []*partition.Partition {
	var out []*partition.Partition
	for _, s := range m.slots() {
		s.mu.Lock()
		if s.state == online {
			out = append(out, s.p)
		}
		s.mu.Unlock()
	}
	return out
}

// OfflinePartition is a partition that is not served, and why.
type OfflinePartition struct {
	Topic string
	Index int32
	Err   error
}

// Offline lists the partitions not served because their storage failed.
func (m *Manager) Offline() []OfflinePartition {
	var out []OfflinePartition
	for _, s := range m.slots() {
		if st, err := s.status(); st == offline && !errors.Is(err, ErrManagerClosed) && !errors.Is(err, partition.ErrClosed) {
			out = append(out, OfflinePartition{Topic: s.topic.Name, Index: s.index, Err: err})
		}
	}
	return out
}

// Loading reports how many partitions of the start are not opened yet.
func (m *Manager) Loading() int {
	n := 0
	for _, s := range m.slots() {
		if st, _ := s.status(); st == queued || st == opening {
			n++
		}
	}
	return n
}

// Close stops loading and maintenance and closes every partition (each
// fsyncs its log and snapshots its producer state).
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	close(m.quit)
	m.cleanCancel()
	m.loaders.Wait()
	<-m.done
	<-m.cleanerDone
	// Closing waits on fsyncs, not on the CPU: more at once than loaders.
	return errors.Join(closeSlots(m.slots(), max(m.workers, closeWorkers))...)
}

// closeWorkers is how many partitions close at once at least.
const closeWorkers = 16

// closeSlots closes slots with n goroutines: each close fsyncs what is not
// yet durable and writes the partition's producer snapshot, and a disk
// serves several of those at once far faster than one after another (a
// broker of ten thousand partitions took 10–16 s to stop one at a time).
func closeSlots(slots []*slot, n int) []error {
	errs := make([]error, len(slots))
	next := make(chan int)
	var workers sync.WaitGroup
	for range max(1, min(n, len(slots))) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range next {
				errs[i] = slots[i].close()
			}
		}()
	}
	for i := range slots {
		next <- i
	}
	close(next)
	workers.Wait()
	return errs
}
