package statelog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
)

// Defaults of the storage knobs that are not broker properties. They live
// here, once, for every coordinator that keeps its state in a Log.
const (
	// DefaultSegmentBytes is small so that compaction can delete whole
	// segments soon after a snapshot.
	DefaultSegmentBytes = 16 << 20
	// DefaultCompactRecords is the least number of records since the last
	// snapshot before the log is compacted.
	DefaultCompactRecords = 10000
)

// Snapshot batches are cut at whichever bound is reached first, so that no
// batch gets huge whatever the records' size (a transaction with thousands
// of partitions is one large record).
const (
	maxSnapshotBatchRecords = 1000
	maxSnapshotBatchBytes   = 1 << 20
)

// ErrUnknownRecord is what a Replay callback returns (or wraps) for a record
// it does not understand: Replay skips it and logs how many it skipped, so a
// record written by a newer idem does not stop an older one from starting.
var ErrUnknownRecord = errors.New("statelog: unknown record")

// Record is one key/value record; a nil Value is a tombstone.
type Record = logstore.Record

// Batch says how a batch of records is framed. The zero value is an
// ordinary batch. The transactional and control forms are Kafka's, for
// records that stay pending until a marker of their producer commits or
// aborts them (transactional offset commits in __consumer_offsets).
type Batch struct {
	// Transactional: the records are pending for ProducerID.
	Transactional bool
	// Control: the batch is a transaction marker of ProducerID.
	Control       bool
	ProducerID    int64 // only for transactional and control batches
	ProducerEpoch int16
}

func (b Batch) attributes() int16 {
	var attrs int16
	if b.Transactional {
		attrs |= 0x10
	}
	if b.Control {
		attrs |= 0x20
	}
	return attrs
}

func batchOf(h logstore.BatchHeader) Batch {
	if !h.IsTransactional() && !h.IsControl() {
		return Batch{}
	}
	return Batch{Transactional: h.IsTransactional(), Control: h.IsControl(), ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch}
}

func encodeBatch(b Batch, recs []Record, now time.Time) []byte {
	pid, epoch := int64(-1), int16(-1)
	if b.Transactional || b.Control {
		pid, epoch = b.ProducerID, b.ProducerEpoch
	}
	return logstore.EncodeBatch(recs, now.UnixMilli(), b.attributes(), pid, epoch)
}

// Config configures a Log. Every field is required except Kick.
type Config struct {
	FS  logstore.FS
	Dir string
	// Name is what log messages call this log ("offsets log").
	Name string
	// SegmentBytes is the segment size of the underlying logstore.Log.
	SegmentBytes int64
	// CompactRecords is the least number of records since the last snapshot
	// before Compact rewrites the log.
	CompactRecords int
	// Live returns how many records a snapshot of the owner's state would
	// write now. It is called by Append and Compact, that is, wherever the
	// owner serialises its state changes (group and txn: under their mutex),
	// so it must not take a lock the callers of Append hold.
	Live func() int
	// Kick, if set, is called (it must not block) when Append finds the log
	// due for compaction: it should make the owner call Compact soon.
	Kick func()
	// Now stamps the batches; it is the owner's clock, not the disk's.
	Now    func() time.Time
	Logger *slog.Logger
	// Disk, if set, lets appends and checkpoints draw on the disk reserve
	// when the disk is full: coordinator state (offset commits, transaction
	// decisions) must keep being written after records no longer can.
	Disk *logstore.Disk
}

func (cfg Config) validate() error {
	switch {
	case cfg.FS == nil:
		return errors.New("statelog: Config.FS is required")
	case cfg.Dir == "":
		return errors.New("statelog: Config.Dir is required")
	case cfg.SegmentBytes <= 0:
		return fmt.Errorf("statelog: Config.SegmentBytes must be positive, not %d", cfg.SegmentBytes)
	case cfg.CompactRecords <= 0:
		return fmt.Errorf("statelog: Config.CompactRecords must be positive, not %d", cfg.CompactRecords)
	case cfg.Live == nil, cfg.Now == nil, cfg.Logger == nil:
		return errors.New("statelog: Config.Live, Now and Logger are required")
	}
	return nil
}

// Log is a durable state log: a logstore.Log whose records, replayed in
// order from its start, rebuild its owner's state. All methods are safe for
// concurrent use; see the package doc for what the owner must guarantee.
type Log struct {
	cfg    Config
	log    *logstore.Log
	logger *slog.Logger

	// mu guards the counters below. It is a leaf: nothing else is locked
	// and no callback is called while it is held.
	mu sync.Mutex
	// records counts the records in the log since its last snapshot
	// (the whole log after Open).
	records int
	// checkAt is the value of records at which Append next asks Live
	// whether compaction is due.
	checkAt int

	// compactMu makes compactions take turns. Lock order: compactMu → the
	// owner's lock → mu.
	compactMu sync.Mutex
}

// Open opens (or creates) the log in cfg.Dir. Retention is off: nothing is
// deleted except by Compact, below a durable snapshot.
func Open(cfg Config) (*Log, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l, err := logstore.Open(cfg.FS, cfg.Dir, logstore.Config{
		SegmentBytes:   cfg.SegmentBytes,
		RetentionBytes: -1,
		RetentionTime:  -1,
		Logger:         cfg.Logger,
		Disk:           cfg.Disk,
		UseReserve:     cfg.Disk != nil,
		// Now stays the real clock: the log's timers (fsync checkpoints,
		// segment rolls) are about the disk, not about the owner's time.
	})
	if err != nil {
		return nil, fmt.Errorf("statelog: open %s: %w", cfg.Name, err)
	}
	return &Log{cfg: cfg, log: l, logger: cfg.Logger}, nil
}

// Replay calls apply for every record from the log start, in log order,
// with the batch it came in and its log position. A record for which apply
// returns an error wrapping ErrUnknownRecord is skipped (and counted in one
// warning); any other error stops the replay and is returned. Call it once,
// after Open and before the first Append.
func (l *Log) Replay(apply func(b Batch, pos int64, r Record) error) error {
	var n, skipped int
	err := l.log.Scan(l.log.StartOffset(), func(_ logstore.BatchHeader, batch []byte) error {
		return logstore.DecodeRecords(batch, func(h logstore.BatchHeader, pos int64, r logstore.Record) error {
			n++
			err := apply(batchOf(h), pos, r)
			if errors.Is(err, ErrUnknownRecord) {
				skipped++
				return nil
			}
			return err
		})
	})
	l.mu.Lock()
	l.records += n
	l.mu.Unlock()
	if skipped > 0 {
		l.logger.Warn("skipped unknown records", "log", l.cfg.Name, "count", skipped)
	}
	return err
}

// Append writes recs as one batch and returns the log end after it: record
// i is at position end-len(recs)+i. It returns after write(2), not after
// the fsync: WaitDurable(end) waits for that, and concurrent waiters share
// one fsync (group commit). With no records it appends nothing and returns
// the current end, so waiting on it covers everything appended before.
//
// The owner calls Append in the same critical section that applies recs to
// its memory, so that log order is memory order (see the package doc).
func (l *Log) Append(b Batch, recs []Record) (end int64, err error) {
	if len(recs) == 0 {
		return l.log.EndOffset(), nil
	}
	info, err := l.log.Append(encodeBatch(b, recs, l.cfg.Now()))
	if err != nil {
		return 0, err
	}
	l.mu.Lock()
	l.records += len(recs)
	records, check := l.records, l.records >= l.checkAt
	if check {
		// Live may walk the owner's whole state, so it is asked only every
		// so often; Compact checks exactly.
		l.checkAt = l.records + max(l.cfg.CompactRecords/8, 1)
	}
	l.mu.Unlock()
	if check && l.due(records) && l.cfg.Kick != nil {
		l.cfg.Kick()
	}
	return info.LastOffset + 1, nil
}

// due is the compaction threshold: more than twice the live records, and
// more than CompactRecords so that small states are not rewritten all the
// time. The cheap test comes first.
func (l *Log) due(records int) bool {
	return records > l.cfg.CompactRecords && records > 2*l.cfg.Live()
}

// WaitDurable returns once every record below end is fsynced, or with the
// log's error once it cannot be (the log is then poisoned for good), or
// with ctx's error.
func (l *Log) WaitDurable(ctx context.Context, end int64) error {
	return l.log.WaitDurable(ctx, end)
}

// End is the position the next appended record will get.
func (l *Log) End() int64 { return l.log.EndOffset() }

// Start is the position of the first record still in the log.
func (l *Log) Start() int64 { return l.log.StartOffset() }

// Records is the number of records in the log since its last snapshot.
func (l *Log) Records() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.records
}

// Err is the error that poisoned the log (a failed fsync), or nil. Once it
// is set nothing more becomes durable, so an owner whose memory runs ahead
// of the disk should stop accepting changes.
func (l *Log) Err() error { return l.log.Err() }

// Close fsyncs and closes the log. The owner calls it after its own
// goroutines (Loop included) have stopped.
func (l *Log) Close() error { return l.log.Close() }
