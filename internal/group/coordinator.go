package group

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/statelog"
)

// Config configures a Coordinator. Every field is used as given: the broker
// fills each from its property of the same name, and tests start from
// DefaultConfig. Zero is a value, not "default": MaxMetadataBytes 0 refuses
// any metadata, InitialRebalanceDelay 0 means no delay.
type Config struct {
	FS                    logstore.FS
	Dir                   string         // <data>/__consumer_offsets
	Disk                  *logstore.Disk // the disk reserve offset commits may draw on (nil: none)
	InitialRebalanceDelay time.Duration  // group.initial.rebalance.delay.ms
	MinSessionTimeout     time.Duration  // group.min.session.timeout.ms
	MaxSessionTimeout     time.Duration  // group.max.session.timeout.ms
	OffsetsRetention      time.Duration  // offsets.retention.minutes
	// OffsetsRetentionCheckInterval is offsets.retention.check.interval.ms:
	// how often expired offsets and empty groups are removed.
	OffsetsRetentionCheckInterval time.Duration
	// MaxMetadataBytes is offset.metadata.max.bytes.
	MaxMetadataBytes int
	// SegmentBytes is the offsets log's segment size (small so that
	// compaction can delete whole segments soon).
	SegmentBytes int64
	// CompactRecords is the least number of records in the offsets log before
	// it is compacted into a snapshot.
	CompactRecords int

	// KIP-848 consumer groups (consumer.go).
	ConsumerSessionTimeout    time.Duration // group.consumer.session.timeout.ms
	ConsumerHeartbeatInterval time.Duration // group.consumer.heartbeat.interval.ms
	ConsumerMaxSize           int           // group.consumer.max.size
	// ConsumerAssignors are the server assignors members may ask for
	// (group.consumer.assignors); the first is the default.
	ConsumerAssignors []string
	Now               func() time.Time
	Logger            *slog.Logger

	// manualTick (tests only) starts no timer goroutine: the test calls tick.
	manualTick bool
	// memberID (tests only) replaces the random member-id generator.
	memberID func(clientID string) string
}

// DefaultConfig returns Kafka's defaults (the property registry's, which
// the broker passes) with FS and Dir left for the caller.
func DefaultConfig() Config {
	return Config{
		InitialRebalanceDelay:         3 * time.Second,
		MinSessionTimeout:             6 * time.Second,
		MaxSessionTimeout:             30 * time.Minute,
		OffsetsRetention:              7 * 24 * time.Hour,
		OffsetsRetentionCheckInterval: 10 * time.Minute,
		MaxMetadataBytes:              4096,
		SegmentBytes:                  statelog.DefaultSegmentBytes,
		CompactRecords:                statelog.DefaultCompactRecords,
		ConsumerSessionTimeout:        45 * time.Second,
		ConsumerHeartbeatInterval:     5 * time.Second,
		ConsumerMaxSize:               math.MaxInt32,
		ConsumerAssignors:             []string{"uniform", "range"},
		Now:                           time.Now,
		Logger:                        slog.New(slog.DiscardHandler),
		memberID:                      newMemberID,
	}
}

func (cfg *Config) validate() error {
	switch {
	case cfg.FS == nil || cfg.Dir == "":
		return errors.New("group: Config.FS and Dir are required")
	case cfg.InitialRebalanceDelay < 0:
		return fmt.Errorf("group: negative InitialRebalanceDelay %v", cfg.InitialRebalanceDelay)
	case cfg.MinSessionTimeout < 0 || cfg.MaxSessionTimeout < cfg.MinSessionTimeout:
		return fmt.Errorf("group: session timeouts [%v, %v] are not a range", cfg.MinSessionTimeout, cfg.MaxSessionTimeout)
	case cfg.OffsetsRetention <= 0 || cfg.OffsetsRetentionCheckInterval <= 0:
		return errors.New("group: OffsetsRetention and OffsetsRetentionCheckInterval must be positive")
	case cfg.MaxMetadataBytes < 0:
		return fmt.Errorf("group: negative MaxMetadataBytes %d", cfg.MaxMetadataBytes)
	case cfg.Now == nil || cfg.Logger == nil:
		return errors.New("group: Config.Now and Logger are required")
	case cfg.ConsumerSessionTimeout <= 0 || cfg.ConsumerHeartbeatInterval <= 0 || cfg.ConsumerMaxSize <= 0:
		return errors.New("group: ConsumerSessionTimeout, ConsumerHeartbeatInterval and ConsumerMaxSize must be positive")
	case len(cfg.ConsumerAssignors) == 0:
		return errors.New("group: ConsumerAssignors needs at least one assignor")
	}
	for _, a := range cfg.ConsumerAssignors {
		if _, ok := assignors[a]; !ok {
			return fmt.Errorf("group: unknown consumer assignor %q (have uniform, range)", a)
		}
	}
	if cfg.memberID == nil {
		cfg.memberID = newMemberID // a test hook, not a setting
	}
	return nil // SegmentBytes and CompactRecords: statelog.Open checks them
}

// Coordinator is the classic-protocol group coordinator of one node: every
// group lives here. All exported methods are safe for concurrent use.
// JoinGroup and SyncGroup block until the rebalance step they wait for
// completes (or their context ends); everything else returns promptly, except
// that offset commits and deletions wait for the fsync that makes them durable.
type Coordinator struct {
	cfg    Config
	logger *slog.Logger
	log    *statelog.Log
	loop   *statelog.Loop

	// mu guards every field below and all group and member state. Lock order:
	// c.mu, then the offsets log's internal locks (Append is called under
	// c.mu so log order equals memory order). WaitDurable is never called
	// with c.mu held.
	mu         sync.Mutex
	closed     bool
	groups     map[string]*group
	nextExpiry time.Time // next offsets-retention pass
	seq        uint64    // join order of members, for stable member lists
}

// NewCoordinator opens (or creates) the offsets log under cfg.Dir, replays it
// and starts the timer goroutine that expires sessions, completes delayed
// rebalances, expires offsets and compacts the log.
func NewCoordinator(cfg Config) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:    cfg,
		logger: cfg.Logger,
		groups: make(map[string]*group),
	}
	l, err := statelog.Open(statelog.Config{
		FS:             cfg.FS,
		Dir:            cfg.Dir,
		Name:           "offsets log",
		SegmentBytes:   cfg.SegmentBytes,
		CompactRecords: cfg.CompactRecords,
		Live:           c.liveRecordsLocked,
		Kick:           func() { c.loop.Kick() },
		Now:            cfg.Now,
		Disk:           cfg.Disk,
		Logger:         cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	c.log = l
	if err := c.replay(); err != nil {
		l.Close()
		return nil, fmt.Errorf("group: replay offsets log: %w", err)
	}
	c.nextExpiry = c.now().Add(cfg.OffsetsRetentionCheckInterval)
	c.loop = statelog.StartLoop(c.nextDeadline, c.tick, cfg.Now, cfg.manualTick)
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
	c.mu.Unlock()
	c.loop.Close()
	return c.log.Close()
}

func (c *Coordinator) now() time.Time { return c.cfg.Now() }

// kick wakes the timer goroutine so it recomputes its next deadline.
func (c *Coordinator) kick() { c.loop.Kick() }

// nextDeadline is the earliest deadline of any group (session, rebalance,
// sync, initial delay) or the next retention pass; the loop sleeps until it.
func (c *Coordinator) nextDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nextDeadlineLocked()
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
		if g.consumer != nil {
			g.consumer.nextDeadline(earlier)
			continue
		}
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
	slices.SortFunc(gs, func(a, b *group) int { return cmp.Compare(a.id, b.id) })
	return gs
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
