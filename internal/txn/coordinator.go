package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/statelog"
)

// MarkerWriter writes transaction markers into partitions. WriteMarker
// returns once the control batch is durable. An error wrapping
// ErrUnknownPartition (the partition is gone) or ErrProducerFenced (the
// partition has seen a newer epoch of the producer) makes the coordinator
// skip the partition; any other error is retried (with backoff) until it
// succeeds or the coordinator closes, because a prepared decision must
// reach every partition.
type MarkerWriter interface {
	WriteMarker(ctx context.Context, topic string, partition int32, pid int64, epoch int16, commit bool, coordinatorEpoch int32) error
}

// OffsetCommitter completes a transaction's offsets in a consumer group.
type OffsetCommitter interface {
	// CompleteTxnOffsets makes the pending transactional offsets of pid in group
	// visible (commit) or drops them (abort), durably.
	CompleteTxnOffsets(ctx context.Context, group string, pid int64, epoch int16, commit bool) error
}

// Config configures a Coordinator. Every field is used as given: the broker
// fills each from its property (or from DefaultConfig where there is none),
// and tests start from DefaultConfig.
type Config struct {
	FS  logstore.FS
	Dir string // <data>/__transaction_state
	// Disk is the disk reserve transaction decisions may draw on when the
	// disk is full (nil: none).
	Disk *logstore.Disk
	// ProducerIDs hands out producer ids that are never reused.
	ProducerIDs interface{ Next() (int64, error) }
	Markers     MarkerWriter
	Offsets     OffsetCommitter
	// MaxTimeout is transaction.max.timeout.ms.
	MaxTimeout time.Duration
	// IDExpiration is transactional.id.expiration.ms: an id with no
	// transaction open and no request for this long is forgotten.
	IDExpiration time.Duration
	// AbortInterval is Kafka's
	// transaction.abort.timed.out.transaction.cleanup.interval.ms: how often
	// timed-out transactions are looked for.
	AbortInterval time.Duration
	// ExpireInterval is Kafka's
	// transaction.remove.expired.transaction.cleanup.interval.ms.
	ExpireInterval time.Duration
	// SegmentBytes is the transaction log's segment size.
	SegmentBytes int64
	// CompactRecords is the least number of records in the log before it
	// is rewritten as a snapshot.
	CompactRecords int
	// CompletionWait bounds how long EndTxn waits for the markers after the
	// decision is durable. Normally they take milliseconds and the answer
	// comes after them; if a partition is slow the answer comes anyway, as
	// Kafka answers right after the decision, before the client's request
	// timeout turns a made decision into an unconfirmed one.
	CompletionWait time.Duration
	Now            func() time.Time
	Logger         *slog.Logger

	// manualTick (tests only) starts no timer goroutine: the test calls tick.
	manualTick bool
	// retryBackoff (tests only) is the first marker retry delay.
	retryBackoff time.Duration
}

// DefaultConfig returns Kafka's defaults (the property registry's, which
// the broker passes); FS, Dir, ProducerIDs, Markers and Offsets are left for
// the caller.
func DefaultConfig() Config {
	return Config{
		MaxTimeout:     15 * time.Minute,
		IDExpiration:   7 * 24 * time.Hour,
		AbortInterval:  10 * time.Second,
		ExpireInterval: time.Hour,
		SegmentBytes:   statelog.DefaultSegmentBytes,
		CompactRecords: statelog.DefaultCompactRecords,
		CompletionWait: 5 * time.Second,
		Now:            time.Now,
		Logger:         slog.New(slog.DiscardHandler),
		retryBackoff:   10 * time.Millisecond,
	}
}

func (cfg *Config) validate() error {
	switch {
	case cfg.FS == nil || cfg.Dir == "" || cfg.ProducerIDs == nil || cfg.Markers == nil || cfg.Offsets == nil:
		return errors.New("txn: Config.FS, Dir, ProducerIDs, Markers and Offsets are required")
	case cfg.MaxTimeout <= 0 || cfg.IDExpiration <= 0 || cfg.AbortInterval <= 0 || cfg.ExpireInterval <= 0:
		return errors.New("txn: MaxTimeout, IDExpiration, AbortInterval and ExpireInterval must be positive")
	case cfg.CompletionWait < 0:
		return fmt.Errorf("txn: negative CompletionWait %v", cfg.CompletionWait)
	case cfg.Now == nil || cfg.Logger == nil:
		return errors.New("txn: Config.Now and Logger are required")
	}
	if cfg.retryBackoff <= 0 {
		cfg.retryBackoff = 10 * time.Millisecond // a test hook, not a setting
	}
	return nil // SegmentBytes and CompactRecords: statelog.Open checks them
}

// Coordinator is the transaction coordinator of one node. All exported
// methods are safe for concurrent use.
type Coordinator struct {
	cfg    Config
	logger *slog.Logger
	log    *statelog.Log
	loop   *statelog.Loop

	// mu guards every field below and every txnMeta (see the package doc
	// for the lock order).
	mu         sync.RWMutex
	closed     bool
	txns       map[string]*txnMeta
	byPID      map[int64]*txnMeta // current and previous producer id → owner
	nextAbort  time.Time          // next timed-out-transaction pass
	nextExpire time.Time          // next transactional-id expiry pass

	// ctx is cancelled by Close; completion goroutines run under it and
	// pass it to the markers they write.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // completion goroutines

	stats stats // see Stats
}

// New opens (or creates) the transaction log under cfg.Dir, replays it,
// resumes the completion of every prepared transaction and starts the timer
// goroutine.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{
		cfg:    cfg,
		logger: cfg.Logger,
		txns:   make(map[string]*txnMeta),
		byPID:  make(map[int64]*txnMeta),
		ctx:    ctx,
		cancel: cancel,
	}
	l, err := statelog.Open(statelog.Config{
		FS:             cfg.FS,
		Dir:            cfg.Dir,
		Name:           "transaction log",
		SegmentBytes:   cfg.SegmentBytes,
		CompactRecords: cfg.CompactRecords,
		Live:           func() int { return len(c.txns) },
		Kick:           func() { c.loop.Kick() },
		Now:            cfg.Now,
		Disk:           cfg.Disk,
		Logger:         cfg.Logger,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("txn: %w", err)
	}
	c.log = l
	if err := c.replay(); err != nil {
		cancel()
		l.Close()
		return nil, fmt.Errorf("txn: replay transaction log: %w", err)
	}
	now := c.now()
	c.nextAbort = now.Add(cfg.AbortInterval)
	c.nextExpire = now.Add(cfg.ExpireInterval)
	// Before the completions resume: their appends may kick the loop.
	c.loop = statelog.StartLoop(c.nextDeadline, c.tick, cfg.Now, cfg.manualTick)
	c.mu.Lock()
	for _, t := range c.txns {
		switch t.s.state {
		case PrepareEpochFence:
			// Not written by idem; if another writer did, the abort it
			// announces is what must happen.
			t.s.state = PrepareAbort
			fallthrough
		case PrepareCommit, PrepareAbort:
			c.logger.Info("finishing a transaction prepared before the restart",
				"transactional_id", t.id, "state", t.s.state, "producer_id", t.s.pid, "epoch", t.s.epoch)
			c.startCompletionLocked(t)
		}
	}
	c.mu.Unlock()
	return c, nil
}

// Close stops the timer and every completion goroutine, joins them and
// closes the log. Transactions still being completed are finished by the
// next New on the same log.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	wasClosed := c.closed
	c.closed = true
	c.mu.Unlock()
	if wasClosed {
		return nil
	}
	c.cancel()
	c.loop.Close()
	c.wg.Wait()
	return c.log.Close()
}

func (c *Coordinator) now() time.Time { return c.cfg.Now() }

// ProducerIDEpoch is a producer id with its epoch.
type ProducerIDEpoch struct {
	ProducerID int64
	Epoch      int16
}

// NoProducer is what InitProducerID takes when the request carries no
// producer id and epoch (versions before 3, or a producer's first call).
var NoProducer = ProducerIDEpoch{-1, -1}

// InitProducerID registers (or re-registers) transactional id: a new id gets
// a fresh producer id with epoch 0; a known one gets its epoch bumped, which
// fences every older instance. If a transaction is Ongoing it is aborted
// first, with a bumped epoch, and ErrConcurrentTransactions is returned until
// the abort has completed (the client retries and then gets yet another
// bump). An exhausted epoch rotates to a new producer id. expected is the
// request's KIP-360 producer id and epoch (NoProducer when absent): it must
// be the current id and epoch (bump) or the previous epoch (a retry of a bump
// whose answer was lost: the current epoch is returned again); otherwise
// ErrProducerFenced.
func (c *Coordinator) InitProducerID(ctx context.Context, id string, timeout time.Duration, expected ProducerIDEpoch) (ProducerIDEpoch, error) {
	if id == "" {
		return NoProducer, ErrInvalidRequest
	}
	if timeout <= 0 || timeout > c.cfg.MaxTimeout {
		return NoProducer, ErrInvalidTransactionTimeout
	}
	hasExpected := expected.ProducerID >= 0
	var freshPID int64 = -1 // allocated outside the lock when needed
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return NoProducer, ErrClosed
		}
		now := c.now()
		t := c.txns[id]
		var cur txnState
		if t == nil {
			if freshPID < 0 {
				c.mu.Unlock()
				pid, err := c.cfg.ProducerIDs.Next()
				if err != nil {
					return NoProducer, fmt.Errorf("%w: allocating a producer id: %w", ErrStorage, err)
				}
				freshPID = pid
				continue
			}
			cur = txnState{pid: freshPID, lastPID: -1, nextPID: -1, epoch: noEpoch, lastEpoch: noEpoch, state: Empty}
			freshPID = -1
		} else {
			if t.busy {
				c.mu.Unlock()
				return NoProducer, ErrConcurrentTransactions
			}
			cur = t.s
		}
		validPID := cur.epoch == noEpoch || expected.ProducerID == cur.pid ||
			(expected.ProducerID == cur.lastPID && epochExhausted(expected.Epoch))
		if hasExpected && !validPID {
			c.mu.Unlock()
			return NoProducer, c.fencedErr()
		}
		next := cur.clone()
		switch cur.state {
		case PrepareCommit, PrepareAbort:
			c.mu.Unlock()
			return NoProducer, ErrConcurrentTransactions
		case Ongoing:
			// Fence: the bumped epoch is never returned; the client's
			// retry after the abort gets a second bump.
			next.state = PrepareAbort
			next.epoch = bump(cur.epoch)
			next.lastEpoch = noEpoch
			next.lastUpdate = now
			if err := c.prepareLocked(id, t, next); err != nil {
				return NoProducer, err
			}
			c.decided(false)
			return NoProducer, ErrConcurrentTransactions
		}
		// Empty, CompleteCommit, CompleteAbort.
		if epochExhausted(cur.epoch) && (!hasExpected || expected.Epoch == cur.epoch) {
			if freshPID < 0 {
				c.mu.Unlock()
				pid, err := c.cfg.ProducerIDs.Next()
				if err != nil {
					return NoProducer, fmt.Errorf("%w: allocating a producer id: %w", ErrStorage, err)
				}
				freshPID = pid
				continue
			}
			next.lastPID, next.pid, next.epoch = cur.pid, freshPID, 0
			next.lastEpoch = noEpoch
			if hasExpected {
				next.lastEpoch = cur.epoch
			}
		} else {
			switch {
			case !hasExpected:
				next.epoch, next.lastEpoch = cur.epoch+1, noEpoch
			case cur.epoch == noEpoch || expected.Epoch == cur.epoch:
				next.epoch, next.lastEpoch = cur.epoch+1, cur.epoch
			case expected.Epoch == cur.lastEpoch:
				// A retry whose first answer was lost: same epoch again.
			default:
				c.mu.Unlock()
				return NoProducer, c.fencedErr()
			}
		}
		next.state = Empty
		next.timeout = timeout
		next.partitions, next.groups = nil, nil
		next.start = time.Time{}
		next.lastUpdate = now
		if t == nil {
			t = &txnMeta{id: id}
		}
		end, err := c.transitionLocked(t, next)
		c.mu.Unlock()
		if err != nil {
			return NoProducer, err
		}
		if err := c.awaitDurable(t, end); err != nil {
			return NoProducer, err
		}
		return ProducerIDEpoch{next.pid, next.epoch}, nil
	}
}

func bump(e int16) int16 {
	if e == 1<<15-1 {
		return e // cannot happen: epochs handed out stop at MaxInt16-1
	}
	return e + 1
}

// transitionLocked checks t's state → next.state against the state
// machine, writes the record, installs it and marks t busy until
// awaitDurable. t may be new (not yet in c.txns): it is registered only if
// its first record is written.
func (c *Coordinator) transitionLocked(t *txnMeta, next txnState) (int64, error) {
	known := c.txns[t.id] == t
	from := t.s.state
	if !known {
		from = Empty
	}
	if !CanTransition(from, next.state) {
		c.logger.Error("refusing an invalid transaction state transition", "transactional_id", t.id, "from", from, "to", next.state)
		return 0, fmt.Errorf("%w: %s → %s", ErrInvalidTxnState, from, next.state)
	}
	settled, hasSettled := t.s, known
	if !known {
		c.txns[t.id] = t // installLocked finds it and keeps this pointer
	}
	end, err := c.writeLocked(t.id, &next)
	if err != nil {
		if !known {
			delete(c.txns, t.id)
		}
		return 0, err
	}
	t.busy = true
	t.settled, t.hasSettled = settled, hasSettled
	return end, nil
}

// prepareLocked writes a PrepareCommit/PrepareAbort decision, unlocks, waits
// until it is durable and starts the completion. It returns with mu
// released.
func (c *Coordinator) prepareLocked(id string, t *txnMeta, next txnState) error {
	end, err := c.transitionLocked(t, next)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.mu.Unlock()
	if err := c.awaitDurable(t, end); err != nil {
		return err
	}
	c.mu.Lock()
	if !c.closed && c.txns[id] == t && t.done == nil {
		c.startCompletionLocked(t)
	}
	c.mu.Unlock()
	return nil
}

// lookupLocked finds id and checks the producer id and epoch a client
// request carries (AddPartitions, AddOffsets, EndTxn).
func (c *Coordinator) lookupLocked(id string, pid int64, epoch int16) (*txnMeta, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if id == "" {
		return nil, ErrInvalidRequest
	}
	t := c.txns[id]
	switch {
	case t != nil && t.s.nextPID >= 0 && pid == t.s.nextPID:
		// A transaction version 2 completion is handing this producer id
		// over; the client already has it. It is current once complete.
		return nil, ErrConcurrentTransactions
	case t == nil, t.s.pid != pid:
		return nil, ErrInvalidProducerIDMapping
	case t.s.epoch != epoch:
		return nil, c.fencedErr()
	case t.busy:
		return nil, ErrConcurrentTransactions
	}
	return t, nil
}

// AddPartitions adds partitions to the transaction of id, starting it if
// none is Ongoing (the transaction timeout runs from here). It is
// AddPartitionsToTxn v0–3: transaction version 1.
func (c *Coordinator) AddPartitions(ctx context.Context, id string, pid int64, epoch int16, parts []TopicPartition) error {
	return c.add(id, pid, epoch, false, addPartitions(parts))
}

// AddPartitionsImplicit is AddPartitions for transaction version 2 (KIP-890
// part 2): Produce v12 adds its partitions itself, durably, before the
// batches are appended. A transaction it starts ends with an epoch bump
// (EndTxnV2).
func (c *Coordinator) AddPartitionsImplicit(ctx context.Context, id string, pid int64, epoch int16, parts []TopicPartition) error {
	return c.add(id, pid, epoch, true, addPartitions(parts))
}

func addPartitions(parts []TopicPartition) func(*txnState) bool {
	return func(s *txnState) bool {
		added := false
		for _, tp := range parts {
			if _, ok := s.partitions[tp]; !ok {
				if s.partitions == nil {
					s.partitions = map[TopicPartition]struct{}{}
				}
				s.partitions[tp] = struct{}{}
				added = true
			}
		}
		return added
	}
}

// AddOffsets adds a consumer group to the transaction of id: its
// transactional offset commits are completed with the transaction. On one
// node the group's offsets partition is implicit.
func (c *Coordinator) AddOffsets(ctx context.Context, id string, pid int64, epoch int16, group string) error {
	return c.add(id, pid, epoch, false, addGroup(group))
}

// AddOffsetsImplicit is AddOffsets for transaction version 2:
// TxnOffsetCommit v5 adds its group itself (no AddOffsetsToTxn).
func (c *Coordinator) AddOffsetsImplicit(ctx context.Context, id string, pid int64, epoch int16, group string) error {
	return c.add(id, pid, epoch, true, addGroup(group))
}

func addGroup(group string) func(*txnState) bool {
	return func(s *txnState) bool {
		if _, ok := s.groups[group]; ok {
			return false
		}
		if s.groups == nil {
			s.groups = map[string]struct{}{}
		}
		s.groups[group] = struct{}{}
		return true
	}
}

// add changes the transaction of id (starting one if none is Ongoing) and
// waits until the change is durable. tv2 marks a transaction it starts as
// transaction version 2.
func (c *Coordinator) add(id string, pid int64, epoch int16, tv2 bool, change func(*txnState) bool) error {
	c.mu.Lock()
	t, err := c.lookupLocked(id, pid, epoch)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	switch t.s.state {
	case PrepareCommit, PrepareAbort:
		c.mu.Unlock()
		return ErrConcurrentTransactions
	case Empty, Ongoing, CompleteCommit, CompleteAbort:
	default:
		c.mu.Unlock()
		return ErrInvalidTxnState
	}
	next := t.s.clone()
	if next.state != Ongoing {
		next.partitions, next.groups = nil, nil
	}
	if !change(&next) && t.s.state == Ongoing {
		c.mu.Unlock()
		return nil // already part of the transaction
	}
	now := c.now()
	if t.s.state != Ongoing {
		next.start = now
		next.tv2 = tv2
	}
	begins := t.s.state != Ongoing
	next.state = Ongoing
	next.lastUpdate = now
	end, err := c.transitionLocked(t, next)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if begins {
		c.stats.begun.Add(1)
	}
	return c.awaitDurable(t, end)
}

// EndTxn commits or aborts the Ongoing transaction of id. The decision is
// durable before any marker is written; EndTxn then waits until every
// marker and offset completion is written (or ctx ends, or
// Config.CompletionWait passes, or the coordinator closes: the decision
// stands and is completed in the background either way). A retry
// after completion with the same outcome succeeds; the opposite outcome is
// ErrInvalidTxnState; during completion the answer is
// ErrConcurrentTransactions.
func (c *Coordinator) EndTxn(ctx context.Context, id string, pid int64, epoch int16, commit bool) error {
	c.mu.Lock()
	t, err := c.lookupLocked(id, pid, epoch)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	prepare, complete := PrepareAbort, CompleteAbort
	if commit {
		prepare, complete = PrepareCommit, CompleteCommit
	}
	switch t.s.state {
	case Ongoing:
	case complete:
		c.mu.Unlock()
		return nil
	case prepare:
		c.mu.Unlock()
		return ErrConcurrentTransactions
	default:
		c.mu.Unlock()
		return ErrInvalidTxnState
	}
	next := t.s.clone()
	next.state = prepare
	next.tv2 = false
	next.lastUpdate = c.now()
	if err := c.prepareLocked(id, t, next); err != nil {
		return err
	}
	c.decided(commit)
	c.awaitCompletion(ctx, t)
	return nil
}

// awaitCompletion waits until t's completion has written its markers, ctx
// ends or Config.CompletionWait passes, whichever is first.
func (c *Coordinator) awaitCompletion(ctx context.Context, t *txnMeta) {
	c.mu.RLock()
	done := t.done
	c.mu.RUnlock()
	if done == nil {
		return
	}
	wait := time.NewTimer(c.cfg.CompletionWait)
	defer wait.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-wait.C:
	}
}

// EndTxnV2 is EndTxn for transaction version 2 (KIP-890 part 2, EndTxn v5+):
// every transaction ends with an epoch bump, and the answer is the producer
// id and epoch the client's next transaction must use. The markers carry
// the bumped epoch, so that partitions too refuse anything later from the
// old one. An exhausted epoch rotates to a new producer id, handed over when
// the markers are written.
//
// Because the epoch moves on, a request of a finished transaction can be
// told from one of the next: this is what closes KAFKA-17754 for clients
// that use it. The rules, Kafka's (TransactionCoordinator.endTransaction):
//
//   - Ongoing at the request's epoch: commit or abort, bumping.
//   - A retry, whose epoch is one below the current one (or the last epoch
//     of the previous producer id after a rotation), of a completed EndTxn
//     with the same outcome succeeds and returns the current id and epoch;
//     with the other outcome, or while the markers are still written, it is
//     ErrInvalidTxnState or ErrConcurrentTransactions. Everything else at an
//     old epoch is ErrProducerFenced: a late EndTxn can never end the next
//     transaction, which runs at the bumped epoch.
//   - An abort at the current epoch with no transaction open (Empty, or
//     Complete* not as a retry) bumps the epoch and writes no markers; a
//     commit with nothing open is ErrInvalidTxnState.
func (c *Coordinator) EndTxnV2(ctx context.Context, id string, pid int64, epoch int16, commit bool) (ProducerIDEpoch, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return NoProducer, ErrClosed
	}
	if id == "" {
		c.mu.Unlock()
		return NoProducer, ErrInvalidRequest
	}
	t := c.txns[id]
	if t == nil {
		c.mu.Unlock()
		return NoProducer, ErrInvalidProducerIDMapping
	}
	cur := t.s
	retryOnBump := cur.pid == pid && epoch >= 0 && cur.epoch == epoch+1
	retryOnRotation := cur.lastPID == pid && pid != cur.pid && epoch == math.MaxInt16-1 && cur.epoch == 0
	retry := retryOnBump || retryOnRotation
	var validEpoch bool
	switch cur.state {
	case PrepareCommit, PrepareAbort:
		validEpoch = retryOnBump
	case CompleteCommit, CompleteAbort:
		validEpoch = retry || epoch == cur.epoch
	default: // Empty, Ongoing
		validEpoch = epoch == cur.epoch
	}
	prepare, complete := PrepareAbort, CompleteAbort
	if commit {
		prepare, complete = PrepareCommit, CompleteCommit
	}
	switch {
	case cur.pid != pid && !retryOnRotation:
		c.mu.Unlock()
		return NoProducer, ErrInvalidProducerIDMapping
	case !validEpoch:
		c.mu.Unlock()
		return NoProducer, c.fencedErr()
	case t.busy:
		c.mu.Unlock()
		return NoProducer, ErrConcurrentTransactions
	}
	switch cur.state {
	case Ongoing:
	case complete:
		if retry {
			c.mu.Unlock()
			return ProducerIDEpoch{cur.pid, cur.epoch}, nil
		}
		if commit {
			c.mu.Unlock()
			return NoProducer, ErrInvalidTxnState
		}
	case CompleteCommit: // an abort
		if retry {
			c.mu.Unlock()
			return NoProducer, ErrInvalidTxnState
		}
	case Empty:
		if commit {
			c.mu.Unlock()
			return NoProducer, ErrInvalidTxnState
		}
	case prepare:
		c.mu.Unlock()
		return NoProducer, ErrConcurrentTransactions
	default:
		c.mu.Unlock()
		return NoProducer, ErrInvalidTxnState
	}
	next := cur.clone()
	if cur.state != Ongoing {
		// An abort with nothing open: no partitions, no groups, no
		// markers; only the epoch moves.
		next.partitions, next.groups = nil, nil
		next.start = time.Time{}
	}
	next.state = prepare
	next.tv2 = true
	next.lastUpdate = c.now()
	next.lastEpoch = cur.epoch
	next.epoch = bump(cur.epoch)
	if epochExhausted(cur.epoch) {
		// The markers take the last epoch; the completion hands over to a
		// fresh producer id (Kafka's nextProducerId).
		c.mu.Unlock()
		fresh, err := c.cfg.ProducerIDs.Next()
		if err != nil {
			return NoProducer, fmt.Errorf("%w: allocating a producer id: %w", ErrStorage, err)
		}
		c.mu.Lock()
		if c.closed || c.txns[id] != t || t.busy || t.s.state != cur.state || t.s.pid != cur.pid || t.s.epoch != cur.epoch {
			c.mu.Unlock()
			return NoProducer, ErrConcurrentTransactions // changed meanwhile: the client retries
		}
		next.nextPID = fresh
	}
	handOver := ProducerIDEpoch{next.pid, next.epoch}
	if next.nextPID >= 0 {
		handOver = ProducerIDEpoch{next.nextPID, 0}
	}
	if err := c.prepareLocked(id, t, next); err != nil {
		return NoProducer, err
	}
	if cur.state == Ongoing {
		c.decided(commit) // not an abort with nothing open (an epoch bump)
	}
	c.awaitCompletion(ctx, t)
	return handOver, nil
}

// Verify is called by Produce for every transactional batch: nil if pid and
// epoch own an Ongoing transaction that includes topic/partition;
// ErrInvalidTxnState if the partition was not added (or no transaction is
// open: a late write from a finished one); ErrProducerFenced if the epoch
// (or the producer id) was superseded; ErrInvalidProducerIDMapping if pid is
// unknown.
func (c *Coordinator) Verify(pid int64, epoch int16, topic string, partition int32) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, err := c.verifyLocked(pid, epoch)
	if err != nil {
		return err
	}
	if _, ok := t.s.partitions[TopicPartition{topic, partition}]; !ok {
		return ErrInvalidTxnState
	}
	return nil
}

// VerifyHold is Verify for a caller that appends right after: on success
// it also holds back the markers of this transaction until release is
// called (release must be called exactly once, after the append). Without
// it a batch verified just before EndTxn could be appended after the
// transaction's marker, opening a transaction on the partition that no
// coordinator will ever close (a hanging transaction that stalls the last
// stable offset); Kafka's partitions close the same race with a
// verification guard.
func (c *Coordinator) VerifyHold(pid int64, epoch int16, topic string, partition int32) (release func(), err error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, err := c.verifyLocked(pid, epoch)
	if err != nil {
		return nil, err
	}
	if _, ok := t.s.partitions[TopicPartition{topic, partition}]; !ok {
		return nil, ErrInvalidTxnState
	}
	// Add under mu while the state is Ongoing: every Add happens before
	// the transition to Prepare*, and so before the completion's Wait.
	t.appends.Add(1)
	var once sync.Once
	return func() { once.Do(t.appends.Done) }, nil
}

// VerifyPartitions is AddPartitionsToTxn v4+ with VerifyOnly (KIP-890 part
// 1's broker-side check, which Kafka's partition leaders send): it reports
// which of parts are in the transaction of id, changing nothing. The
// producer id and epoch must be current (ErrInvalidProducerIDMapping,
// ErrProducerFenced), and a transaction whose markers are being written is
// ErrConcurrentTransactions, as Kafka answers.
func (c *Coordinator) VerifyPartitions(id string, pid int64, epoch int16, parts []TopicPartition) ([]bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, ErrClosed
	}
	if id == "" {
		return nil, ErrInvalidRequest
	}
	t := c.txns[id]
	switch {
	case t == nil, t.s.pid != pid:
		return nil, ErrInvalidProducerIDMapping
	case t.s.epoch != epoch:
		return nil, c.fencedErr()
	case t.s.state == PrepareCommit || t.s.state == PrepareAbort:
		return nil, ErrConcurrentTransactions
	}
	in := make([]bool, len(parts))
	for i, tp := range parts {
		_, in[i] = t.s.partitions[tp]
	}
	return in, nil
}

// VerifyGroup is Verify for TxnOffsetCommit: nil if pid and epoch own an
// Ongoing transaction to which AddOffsetsToTxn added group.
func (c *Coordinator) VerifyGroup(pid int64, epoch int16, group string) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, err := c.verifyLocked(pid, epoch)
	if err != nil {
		return err
	}
	if _, ok := t.s.groups[group]; !ok {
		return ErrInvalidTxnState
	}
	return nil
}

// verifyLocked needs mu held for reading.
func (c *Coordinator) verifyLocked(pid int64, epoch int16) (*txnMeta, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if err := c.log.Err(); err != nil {
		// Memory may be ahead of a log that can no longer be made durable;
		// accepting writes now could leave transactions a restart forgets.
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	t := c.byPID[pid]
	switch {
	case t == nil:
		return nil, ErrInvalidProducerIDMapping
	case t.s.nextPID >= 0 && pid == t.s.nextPID:
		return nil, ErrConcurrentTransactions // see lookupLocked
	case t.s.pid != pid, epoch < t.s.epoch:
		return nil, c.fencedErr()
	case epoch != t.s.epoch:
		return nil, ErrInvalidProducerEpoch
	case t.s.state != Ongoing:
		return nil, ErrInvalidTxnState
	}
	return t, nil
}

// Describe returns the state of one transactional id: its last settled
// state, as Kafka's DescribeTransactions shows TransactionMetadata.state
// and not a transition still being written. A state whose record is not
// yet durable is not shown (a power loss could take it back), and requests
// that would change the id meanwhile are answered ErrConcurrentTransactions;
// so once Describe shows PrepareCommit, the decision is durable and an
// EndTxn(abort) is ErrInvalidTxnState.
func (c *Coordinator) Describe(id string) (Info, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return Info{}, ErrClosed
	}
	if id == "" {
		return Info{}, ErrInvalidRequest
	}
	s, ok := c.txns[id].visible()
	if !ok {
		return Info{}, ErrTransactionalIDNotFound
	}
	return s.info(id), nil
}

// ListFilter selects transactions for List; zero fields select everything.
type ListFilter struct {
	States      []State
	ProducerIDs []int64
	// MinDuration (>0) keeps only transactions that started at least this
	// long ago and are not complete (ListTransactions v1's duration filter).
	MinDuration time.Duration
}

// List returns the transactional ids matching f, sorted by id, in their
// settled states (see Describe).
func (c *Coordinator) List(f ListFilter) ([]Info, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, ErrClosed
	}
	now := c.now()
	var out []Info
	for _, id := range slices.Sorted(maps.Keys(c.txns)) {
		s, ok := c.txns[id].visible()
		if !ok {
			continue
		}
		if len(f.States) > 0 && !slices.Contains(f.States, s.state) {
			continue
		}
		if len(f.ProducerIDs) > 0 && !slices.Contains(f.ProducerIDs, s.pid) {
			continue
		}
		if f.MinDuration > 0 {
			switch s.state {
			case Ongoing, PrepareCommit, PrepareAbort, PrepareEpochFence:
			default:
				continue
			}
			if s.start.IsZero() || now.Sub(s.start) < f.MinDuration {
				continue
			}
		}
		out = append(out, s.info(id))
	}
	return out, nil
}
