package group

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
)

// Config configures a Coordinator. Zero durations take Kafka's defaults.
type Config struct {
	FS                    logstore.FS
	Dir                   string        // <data>/__consumer_offsets
	InitialRebalanceDelay time.Duration // group.initial.rebalance.delay.ms (3000); <0 = none
	MinSessionTimeout     time.Duration // group.min.session.timeout.ms (6000)
	MaxSessionTimeout     time.Duration // group.max.session.timeout.ms (1800000)
	OffsetsRetention      time.Duration // offsets.retention.minutes (10080)
	// OffsetsRetentionCheckInterval is offsets.retention.check.interval.ms
	// (600000): how often expired offsets and empty groups are removed.
	OffsetsRetentionCheckInterval time.Duration
	// MaxMetadataBytes is offset.metadata.max.bytes (4096).
	MaxMetadataBytes int
	// SegmentBytes is the offsets log's segment size (default 16 MiB; small so
	// that compaction can delete whole segments soon).
	SegmentBytes int64
	// CompactRecords is the least number of records in the offsets log before
	// it is compacted into a snapshot (default 10000).
	CompactRecords int
	Now            func() time.Time
	Logger         *slog.Logger

	// manualTick (tests only) starts no timer goroutine: the test calls tick.
	manualTick bool
	// log (tests only) replaces the logstore.Log opened from FS and Dir.
	log offsetLog
	// memberID (tests only) replaces the random member-id generator.
	memberID func(clientID string) string
}

func (cfg *Config) setDefaults() {
	if cfg.InitialRebalanceDelay == 0 {
		cfg.InitialRebalanceDelay = 3 * time.Second
	} else if cfg.InitialRebalanceDelay < 0 {
		cfg.InitialRebalanceDelay = 0
	}
	if cfg.MinSessionTimeout == 0 {
		cfg.MinSessionTimeout = 6 * time.Second
	}
	if cfg.MaxSessionTimeout == 0 {
		cfg.MaxSessionTimeout = 30 * time.Minute
	}
	if cfg.OffsetsRetention == 0 {
		cfg.OffsetsRetention = 7 * 24 * time.Hour
	}
	if cfg.OffsetsRetentionCheckInterval == 0 {
		cfg.OffsetsRetentionCheckInterval = 10 * time.Minute
	}
	if cfg.MaxMetadataBytes == 0 {
		cfg.MaxMetadataBytes = 4096
	}
	if cfg.SegmentBytes == 0 {
		cfg.SegmentBytes = 16 << 20
	}
	if cfg.CompactRecords == 0 {
		cfg.CompactRecords = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.memberID == nil {
		cfg.memberID = newMemberID
	}
}

// Coordinator is the classic-protocol group coordinator of one node: every
// group lives here. All exported methods are safe for concurrent use.
// JoinGroup and SyncGroup block until the rebalance step they wait for
// completes (or their context ends); everything else returns promptly, except
// that offset commits and deletions wait for the fsync that makes them durable.
type Coordinator struct {
	cfg    Config
	logger *slog.Logger
	log    offsetLog

	// mu guards every field below and all group and member state. Lock order:
	// c.mu, then the offsets log's internal locks (Append is called under
	// c.mu so log order equals memory order). WaitDurable is never called
	// with c.mu held.
	mu         sync.Mutex
	closed     bool
	groups     map[string]*group
	logRecords int // records in the log since its last snapshot
	// compactCheckAt is the logRecords count at which appendLocked next
	// compares the log with the live state.
	compactCheckAt int
	nextExpiry     time.Time // next offsets-retention pass
	seq            uint64    // join order of members, for stable member lists

	kickc chan struct{} // wakes the timer goroutine to recompute its deadline
	done  chan struct{}
	wg    sync.WaitGroup
}

// NewCoordinator opens (or creates) the offsets log under cfg.Dir, replays it
// and starts the timer goroutine that expires sessions, completes delayed
// rebalances and expires offsets.
func NewCoordinator(cfg Config) (*Coordinator, error) {
	cfg.setDefaults()
	c := &Coordinator{
		cfg:    cfg,
		logger: cfg.Logger,
		log:    cfg.log,
		groups: make(map[string]*group),
		kickc:  make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	if c.log == nil {
		if cfg.FS == nil {
			return nil, errors.New("group: Config.FS is required")
		}
		l, err := logstore.Open(cfg.FS, cfg.Dir, logstore.Config{
			SegmentBytes:   cfg.SegmentBytes,
			RetentionBytes: -1,
			RetentionTime:  -1, // the coordinator deletes what it compacted, nothing else
			Logger:         cfg.Logger,
			// Now stays the real clock: the log's timers (fsync checkpoints,
			// segment rolls) are about the disk, not about group time.
		})
		if err != nil {
			return nil, fmt.Errorf("group: open offsets log: %w", err)
		}
		c.log = storeLog{l}
	}
	if err := c.replay(); err != nil {
		c.log.Close()
		return nil, fmt.Errorf("group: replay offsets log: %w", err)
	}
	c.nextExpiry = c.now().Add(cfg.OffsetsRetentionCheckInterval)
	if !cfg.manualTick {
		c.wg.Add(1)
		go c.run()
	}
	return c, nil
}

// Close answers every waiting JoinGroup and SyncGroup with ErrClosed, stops
// the timer goroutine and closes the offsets log. Offsets already
// acknowledged are durable; Close adds nothing to that.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for _, g := range c.groups {
		for _, m := range g.members {
			m.replyJoin(JoinResult{MemberID: m.id, Generation: -1}, ErrClosed)
			m.replySync(SyncResult{}, ErrClosed)
		}
	}
	close(c.done)
	c.mu.Unlock()
	c.wg.Wait()
	return c.log.Close()
}

func (c *Coordinator) now() time.Time { return c.cfg.Now() }

// kick wakes the timer goroutine so it recomputes its next deadline.
func (c *Coordinator) kick() {
	select {
	case c.kickc <- struct{}{}:
	default:
	}
}

// run is the only goroutine the coordinator starts. It sleeps until the
// earliest deadline of any group (session, rebalance, sync, initial delay),
// the next retention pass, or a kick, then calls tick. Deadlines are times of
// Config.Now; the sleep is their distance from Now, capped at a second so a
// clock that jumps (or a test's fake clock) is noticed soon.
func (c *Coordinator) run() {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		c.mu.Lock()
		next := c.nextDeadlineLocked()
		c.mu.Unlock()
		d := min(max(next.Sub(c.now()), 0), time.Second)
		t.Reset(d)
		select {
		case <-c.done:
			return
		case <-c.kickc:
		case <-t.C:
		}
		c.tick()
	}
}

// tick does every piece of timed work that is due at Now.
func (c *Coordinator) tick() {
	now := c.now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	for _, g := range c.sortedGroupsLocked() {
		c.expireGroupLocked(g, now)
	}
	if !now.Before(c.nextExpiry) {
		c.expireOffsetsLocked(now)
		c.nextExpiry = now.Add(c.cfg.OffsetsRetentionCheckInterval)
	}
	c.mu.Unlock()
	if err := c.compact(); err != nil {
		c.logger.Error("offsets log compaction failed", "err", err)
	}
}

func (c *Coordinator) nextDeadlineLocked() time.Time {
	next := c.nextExpiry
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	for _, g := range c.groups {
		for _, dl := range g.pending {
			earlier(dl)
		}
		switch g.state {
		case PreparingRebalance:
			if !g.delayUntil.IsZero() {
				earlier(g.delayUntil)
			}
			earlier(g.joinDeadline)
		case CompletingRebalance, Stable:
			earlier(g.syncDeadline)
		}
		for _, m := range g.members {
			if m.joinWait == nil && m.syncWait == nil {
				earlier(m.deadline)
			}
		}
	}
	return next
}

func (c *Coordinator) newGroupLocked(id string, now time.Time) *group {
	g := &group{
		id:         id,
		state:      Empty,
		stateTime:  now,
		members:    make(map[string]*member),
		static:     make(map[string]string),
		pending:    make(map[string]time.Time),
		offsets:    make(map[TopicPartition]Offset),
		pendingTxn: make(map[int64]*pendingTxn),
	}
	c.groups[id] = g
	return g
}

func (c *Coordinator) sortedGroupsLocked() []*group {
	gs := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b *group) int { return cmpString(a.id, b.id) })
	return gs
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// newMemberID follows Kafka's "<client id>-<uuid>" so ids read the same in
// tools that show them.
func newMemberID(clientID string) string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return clientID + "-" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// waitCtx waits for a reply on ch or the end of ctx.
func waitCtx[T any](ctx context.Context, ch chan T) (T, bool) {
	select {
	case r := <-ch:
		return r, true
	case <-ctx.Done():
		var zero T
		return zero, false
	}
}
