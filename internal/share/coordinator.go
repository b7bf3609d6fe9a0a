package share

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/statelog"
)

// Topics is what the coordinator needs of the broker's topics: names and
// ids, partitions to read from and to write dead letters to, topic creation
// for auto-created dead-letter topics and a producer id for its own writes.
// The broker adapts its topics.Manager (internal/kafka/api.ShareTopics).
type Topics interface {
	ByName(name string) (TopicInfo, bool)
	ByID(id [16]byte) (TopicInfo, bool)
	// Partition returns an open partition, or an error wrapping
	// topics.ErrUnknownPartition, ErrOffline or ErrLoading.
	Partition(topic string, index int32) (Partition, error)
	CreateTopic(name string, partitions int32, configs map[string]string) (TopicInfo, error)
	NewProducerID() (int64, error)
}

// TopicInfo describes one topic.
type TopicInfo struct {
	Name       string
	ID         [16]byte
	Partitions int32
	Configs    map[string]string
}

// AbortedTxn is an aborted transaction on a partition (read_committed).
type AbortedTxn struct{ ProducerID, FirstOffset, LastOffset int64 }

// AppendResult says where an appended batch landed.
type AppendResult struct {
	BaseOffset, LastOffset int64
	Duplicate              bool // a retry of a batch already in the log
}

// Partition is what the coordinator needs of one topic partition.
type Partition interface {
	StartOffset() int64
	HighWatermark() int64
	LastStableOffset() int64
	EndOffset() int64
	// Read and ReadCommitted return whole batches from the one holding
	// offset, up to the high watermark (last stable offset).
	Read(offset int64, maxBytes int) ([]byte, error)
	ReadCommitted(offset int64, maxBytes int) ([]byte, error)
	AbortedTransactions(from, to int64) []AbortedTxn
	OffsetForTime(ts int64) (int64, bool, error)
	Append(batch []byte) (AppendResult, error)
	WaitDurable(ctx context.Context, end int64) error
	// Watch signals ch (without blocking) when the high watermark moves.
	Watch(ch chan<- struct{}) (stop func())
}

// Config configures a Coordinator. Broker-level share settings
// (group.share.*, errors.deadletterqueue.*) are read from Broker where they
// are used, so dynamic changes take effect at once; group-level overrides
// come from the coordinator's own config store.
type Config struct {
	FS     logstore.FS
	Dir    string         // <data>/__share_group_state
	Disk   *logstore.Disk // the disk reserve the share log may draw on (nil: none)
	Topics Topics
	Broker *config.Config
	// SegmentBytes and CompactRecords tune the share log
	// (statelog.DefaultSegmentBytes, statelog.DefaultCompactRecords).
	SegmentBytes   int64
	CompactRecords int
	Now            func() time.Time
	Logger         *slog.Logger

	// manualTick (tests only) starts no goroutines: the test calls tick
	// and runDLQ.
	manualTick bool
	// rand (tests only) replaces the jitter source.
	rand func() float64
}

// DefaultConfig returns a Config with the storage defaults; FS, Dir, Topics
// and Broker are left to the caller.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:   statelog.DefaultSegmentBytes,
		CompactRecords: statelog.DefaultCompactRecords,
		Now:            time.Now,
		Logger:         slog.New(slog.DiscardHandler),
	}
}

func (cfg *Config) validate() error {
	switch {
	case cfg.FS == nil || cfg.Dir == "":
		return errors.New("share: Config.FS and Dir are required")
	case cfg.Topics == nil || cfg.Broker == nil:
		return errors.New("share: Config.Topics and Broker are required")
	case cfg.Now == nil || cfg.Logger == nil:
		return errors.New("share: Config.Now and Logger are required")
	}
	if cfg.rand == nil {
		cfg.rand = rand.Float64
	}
	return nil
}

// Coordinator is the share-group coordinator of one node. All exported
// methods are safe for concurrent use.
type Coordinator struct {
	cfg    Config
	logger *slog.Logger
	log    *statelog.Log
	loop   *statelog.Loop

	// mu guards everything below and all group, member, session and
	// share-partition state; functions ending in Locked need it held. Lock
	// order: mu → the share log's locks → the partitions' locks (a
	// partition's offsets are read under mu). WaitDurable, partition reads
	// and appends, and topic creation happen outside mu.
	mu       sync.Mutex
	closed   bool
	groups   map[string]*group
	configs  map[resourceKey]map[string]string
	sessions map[sessionKey]*session
	conns    map[uint64]map[*session]struct{} // sessions by connection
	timers   timerHeap
	// dlq is the dead-letter state (dlq.go).
	dlq dlqState

	stats stats

	// dlqKick wakes the dead-letter writer; dlqDone is closed when it
	// exits. stop is closed by Close.
	dlqKick chan struct{}
	dlqDone chan struct{}
	stop    chan struct{}
}

type resourceKey struct {
	typ  int8
	name string
}

// New opens (or creates) the share log under cfg.Dir, replays it and starts
// the timer goroutine (lock expiries, member sessions, delayed retries,
// compaction) and the dead-letter writer.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:      cfg,
		logger:   cfg.Logger,
		groups:   map[string]*group{},
		configs:  map[resourceKey]map[string]string{},
		sessions: map[sessionKey]*session{},
		conns:    map[uint64]map[*session]struct{}{},
		dlqKick:  make(chan struct{}, 1),
		dlqDone:  make(chan struct{}),
		stop:     make(chan struct{}),
	}
	c.dlq.init()
	c.stats.init()
	l, err := statelog.Open(statelog.Config{
		FS:             cfg.FS,
		Dir:            cfg.Dir,
		Name:           "share log",
		SegmentBytes:   cfg.SegmentBytes,
		CompactRecords: cfg.CompactRecords,
		Live:           c.liveRecordsLocked,
		Kick:           func() { c.loop.Kick() },
		Now:            cfg.Now,
		Disk:           cfg.Disk,
		Logger:         cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("share: %w", err)
	}
	c.log = l
	if err := c.replay(); err != nil {
		l.Close()
		return nil, fmt.Errorf("share: replay share log: %w", err)
	}
	// Dynamic broker configs are applied before anything reads them.
	for k, v := range c.configs[resourceKey{ResourceBroker, ""}] {
		if err := cfg.Broker.SetDynamic(k, &v); err != nil {
			c.logger.Warn("ignoring stored dynamic broker config", "name", k, "err", err)
		}
	}
	c.loop = statelog.StartLoop(c.nextDeadline, c.tick, cfg.Now, cfg.manualTick)
	if cfg.manualTick {
		close(c.dlqDone)
	} else {
		go c.dlqLoop()
	}
	return c, nil
}

// Close releases nothing and writes nothing: acquisitions are volatile by
// design and everything acknowledged is already durable. It stops the
// goroutines and closes the share log.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for _, s := range c.sessions {
		s.closed = true
	}
	for _, g := range c.groups {
		g.wakeLocked()
	}
	close(c.stop)
	c.mu.Unlock()
	c.loop.Close()
	<-c.dlqDone
	return c.log.Close()
}

func (c *Coordinator) now() time.Time { return c.cfg.Now() }

// appendLocked writes recs as one batch; the caller waits for the returned
// end outside mu before acknowledging anything that depends on them.
func (c *Coordinator) appendLocked(recs []statelog.Record) (int64, error) {
	if len(recs) == 0 {
		return c.log.End(), nil
	}
	end, err := c.log.Append(statelog.Batch{}, recs)
	if err != nil {
		c.logger.Error("share log append failed", "err", err)
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return end, nil
}

// waitDurable waits until everything below end is fsynced.
func (c *Coordinator) waitDurable(ctx context.Context, end int64) error {
	if end <= 0 {
		return nil
	}
	if err := c.log.WaitDurable(ctx, end); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}

// WaitDurable waits until the share log is durable up to pos (a position
// an operation returned).
func (c *Coordinator) WaitDurable(ctx context.Context, pos int64) error {
	return c.waitDurable(ctx, pos)
}

// Timers: one min-heap of deadlines for the whole coordinator. A lock
// deadline covers the records of one acquisition (one range); renewing or
// releasing them makes the entry stale, which is noticed when it is popped
// (the records' acquisition id no longer matches), so nothing is ever
// removed from the middle of the heap.

type timerKind uint8

const (
	timerLock      timerKind = iota // an acquisition lock expires
	timerAvailable                  // a delayed retry becomes available
)

type timer struct {
	at          int64 // unix nanoseconds
	kind        timerKind
	sp          *sharePartition
	first, last int64
	acq         uint32
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func (c *Coordinator) addTimerLocked(t timer) {
	first := len(c.timers) == 0 || t.at < c.timers[0].at
	heap.Push(&c.timers, t)
	if first {
		c.loop.Kick()
	}
}

// nextDeadline is the earliest timer, member session or group deadline.
func (c *Coordinator) nextDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.now().Add(time.Second)
	if len(c.timers) > 0 {
		if t := time.Unix(0, c.timers[0].at); t.Before(next) {
			next = t
		}
	}
	for _, g := range c.groups {
		for _, m := range g.members {
			if m.deadline.Before(next) {
				next = m.deadline
			}
		}
	}
	return next
}

// tick does the timed work that is due: lock expiries and delayed retries,
// member session expiry, then compaction.
func (c *Coordinator) tick() {
	now := c.now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.fireTimersLocked(now)
	for _, id := range sortedKeys(c.groups) {
		c.expireMembersLocked(c.groups[id], now)
	}
	end := c.log.End()
	c.mu.Unlock()
	// Expiries and releases are durable before the next tick: nobody is
	// answered for them, but the history a crash leaves must not go back
	// on a delivery a consumer saw.
	if err := c.waitDurable(context.Background(), end); err != nil {
		c.logger.Error("share log sync failed", "err", err)
	}
	if _, err := c.log.Compact(&c.mu, c.writeSnapshotLocked); err != nil {
		c.logger.Error("share log compaction failed", "err", err)
	}
}

// fireTimersLocked pops every due timer. Lock expiries of one share
// partition are written as one delta record per partition.
func (c *Coordinator) fireTimersLocked(now time.Time) {
	nowNs := now.UnixNano()
	changed := map[*sharePartition]*changeSet{}
	for len(c.timers) > 0 && c.timers[0].at <= nowNs {
		t := heap.Pop(&c.timers).(timer)
		sp := t.sp
		if sp.deleted {
			continue
		}
		switch t.kind {
		case timerLock:
			cs := changed[sp]
			if cs == nil {
				cs = &changeSet{}
				changed[sp] = cs
			}
			c.expireLocksLocked(sp, t, now, cs)
		case timerAvailable:
			sp.g.wakeLocked()
		}
	}
	for _, sp := range sortedPartitions(changed) {
		cs := changed[sp]
		if len(cs.offsets) == 0 {
			continue
		}
		// Nobody waits for an expiry, but a record it made available
		// is handed out again only once the expiry is durable (see
		// inflight.pos), so a crash cannot lose a delivery count that a
		// consumer has seen.
		if _, err := c.commitChangesLocked(sp, cs); err != nil {
			c.logger.Error("share log append failed for lock expiry", "err", err)
		}
		sp.g.wakeLocked()
	}
}

func sortedPartitions(m map[*sharePartition]*changeSet) []*sharePartition {
	out := make([]*sharePartition, 0, len(m))
	for sp := range m {
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b *sharePartition) int {
		if c := cmp.Compare(a.g.id, b.g.id); c != 0 {
			return c
		}
		return a.tp.compare(b.tp)
	})
	return out
}
