package logstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes a Log. Zero values take the defaults noted on each field.
type Config struct {
	// SegmentBytes rolls to a new segment when the active one would exceed
	// it (log.segment.bytes; default 1 GiB).
	SegmentBytes int64
	// RollInterval rolls a non-empty segment this long after it was opened
	// (log.roll.ms; default 168h).
	RollInterval time.Duration
	// RetentionBytes caps the log's size; older sealed segments are deleted
	// by EnforceRetention (log.retention.bytes; 0 or negative = unlimited).
	RetentionBytes int64
	// RetentionTime deletes sealed segments whose newest timestamp is older
	// (log.retention.ms; default 168h; negative = unlimited).
	RetentionTime time.Duration
	// IndexIntervalBytes is the spacing of sparse index entries (default 4096).
	IndexIntervalBytes int
	// CheckpointInterval is how often the recovery point is persisted
	// (default 1s). Damage at or above the recovery point is treated as a
	// torn tail on the next open, so a shorter interval narrows that window.
	CheckpointInterval time.Duration
	// ActiveIndexInterval is how far the active segment may grow past its
	// persisted index before a checkpoint persists a new one (default 64
	// MiB); it bounds how much a start after a crash rescans. A clean Close
	// persists it when more than min(1 MiB, ActiveIndexInterval) is not
	// covered, so a start after a clean stop scans nothing.
	ActiveIndexInterval int64
	// BackgroundSyncDelay is how long appends that nobody waits for may
	// stay un-fsynced (and so unreadable) while more bytes gather (default
	// 2ms). Durable waiters are never delayed by it.
	BackgroundSyncDelay time.Duration
	// Disk watches free space and keeps the reserve that metadata writes
	// (checkpoints, indexes) draw on when the disk is full; nil = none.
	Disk *Disk
	// Files is the open-file cache the log's segment files go through
	// (filecache.go); nil takes Disk's, so every log of a data directory
	// shares one limit, or, without a Disk, a cache of the log's own with
	// no limit.
	Files *FileCache
	// UseReserve lets every append draw on the disk reserve: for the
	// coordinators' state logs, whose small writes (offset commits,
	// transaction decisions) must go on when records can no longer be
	// accepted. Partition logs leave it off.
	UseReserve bool
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives recovery and fsync reports (default slog.Default()).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 1 << 30
	}
	if c.RollInterval <= 0 {
		c.RollInterval = 168 * time.Hour
	}
	if c.RetentionTime == 0 {
		c.RetentionTime = 168 * time.Hour
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = 4096
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = time.Second
	}
	if c.ActiveIndexInterval <= 0 {
		c.ActiveIndexInterval = 64 << 20
	}
	if c.BackgroundSyncDelay <= 0 {
		c.BackgroundSyncDelay = 2 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Files == nil {
		c.Files = c.Disk.Files()
	}
	if c.Files == nil {
		c.Files = NewFileCache(0)
	}
	return c
}

// segmentPos is a batch boundary in a segment: the bytes before size hold
// the offsets before next, whose largest timestamp is maxTS.
type segmentPos struct {
	base, size, next, maxTS int64
}

// Reconfigure applies a topic's changed settings to an open log: segment
// size, roll interval, retention and index spacing take effect for the next
// append, roll and retention pass (a dynamic topic config, as in Kafka).
func (l *Log) Reconfigure(cfg Config) {
	cfg = cfg.withDefaults()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed && len(l.segs) > 0 {
		// The active segment rolls at its open time plus the new interval.
		a := l.active()
		a.rollTime = a.rollTime.Add(cfg.RollInterval - l.cfg.RollInterval)
	}
	l.cfg.SegmentBytes, l.cfg.RollInterval = cfg.SegmentBytes, cfg.RollInterval
	l.cfg.RetentionBytes, l.cfg.RetentionTime = cfg.RetentionBytes, cfg.RetentionTime
	l.cfg.IndexIntervalBytes = cfg.IndexIntervalBytes
}

// AppendInfo describes where an appended batch landed.
type AppendInfo struct {
	BaseOffset int64
	LastOffset int64
	Position   int64 // byte position in its segment
}

// Log is one partition's log. All methods are safe for concurrent use.
//
// Lock order: cleanMu → syncMu → ckptMu → mu → waitMu. The FileCache's
// lock (filecache.go) is a leaf below all of them.
type Log struct {
	fs  FS
	dir string
	cfg Config
	log *slog.Logger

	// syncMu is held by the syncer while it fsyncs the active segment and
	// by anything that closes segment files, so a file is never closed
	// under an fsync in flight.
	syncMu sync.Mutex
	// ckptMu serialises checkpoint writes with changes that lower the
	// recovery point (Truncate).
	ckptMu       sync.Mutex
	lastCkptTime time.Time // guarded by ckptMu
	lastCkpt     checkpoint
	// ckptGen is the generation of the last checkpoint file write (guarded
	// by ckptMu); the shared recovery points name it.
	ckptGen uint64
	// shared and sharedKey: the data directory's shared recovery points
	// and this log's name in them; nil when the log writes every advance
	// to its own checkpoint file (no Disk, or a log outside its directory).
	shared    *sharedPoints
	sharedKey string
	// indexed is how much of the active segment its persisted index
	// covers (guarded by ckptMu): recovery scans only what lies beyond.
	indexed segmentPos

	// cleanMu serialises cleaning rounds and the cleaner state file
	// (cleaner.go); it is taken before any other lock of the log.
	cleanMu     sync.Mutex
	cleanBroken error        // a swap left unfinished (guarded by cleanMu)
	firstDirty  atomic.Int64 // offsets below were cleaned (cleaner state)
	minHorizon  atomic.Int64 // earliest pending delete horizon, -1 none

	mu     sync.RWMutex // guards segs, closed and the segments' fields
	segs   []*segment   // ascending base offsets; the last is active
	closed bool

	start   atomic.Int64 // log start offset; written with mu held
	durable atomic.Int64 // every offset below is fsynced
	// durablePos is where the durable offset lies in the active segment
	// (guarded by waitMu), so an index of the durable prefix can be written.
	durablePos segmentPos
	poison     atomic.Pointer[error]

	waitMu   sync.Mutex
	advanced chan struct{} // closed and replaced whenever durable advances or the log fails

	kick   chan struct{} // tells the syncer bytes were appended; capacity 1
	urgent chan struct{} // tells the syncer someone waits for durability; capacity 1
	quit   chan struct{}
	done   chan struct{} // closed when the syncer exits
	turn   *batchTurn    // the syncer's place in the Disk's fsync batches (fsbatch.go)
}

// Open opens or creates the log in dir and recovers it (see the package doc).
func Open(fsys FS, dir string, cfg Config) (*Log, error) {
	cfg = cfg.withDefaults()
	l := &Log{
		fs: fsys, dir: dir, cfg: cfg, log: cfg.Logger.With("log", dir),
		advanced: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		urgent:   make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if sp := cfg.Disk.sharedPoints(); sp != nil {
		if k := sp.key(dir); k != "" {
			l.shared, l.sharedKey = sp, k
		}
	}
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("logstore: create %s: %w", dir, err)
	}
	l.turn = cfg.Disk.turnFor(dir) // once dir exists: it asks dir's file system
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, err
	}
	go l.syncLoop()
	return l, nil
}

// recover loads the segments, validates them and truncates a torn tail.
func (l *Log) recover() error {
	// A cleaner swap a crash interrupted is finished or rolled back
	// before anything looks at the segments (compact_swap.go).
	if err := l.recoverCleaner(); err != nil {
		return err
	}
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("logstore: list %s: %w", l.dir, err)
	}
	var bases []int64
	hasIndex := map[int64]bool{}
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, ".tmp"):
			if err := l.fs.Remove(join(l.dir, n)); err != nil {
				return fmt.Errorf("logstore: remove leftover %s: %w", n, err)
			}
		case strings.HasSuffix(n, ".log"):
			if b, ok := parseSegmentName(n, ".log"); ok {
				bases = append(bases, b)
			}
		case strings.HasSuffix(n, ".index"):
			if b, ok := parseSegmentName(n, ".index"); ok {
				hasIndex[b] = true
			}
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	ck, gen, ckOK, err := readCheckpoint(l.fs, l.dir)
	if err != nil {
		return fmt.Errorf("logstore: read checkpoint: %w", err)
	}
	l.ckptGen = gen
	if !ckOK {
		// A log without a checkpoint starts its generations somewhere no
		// earlier log of the same directory (deleted with its checkpoint,
		// then recreated) can have reached, so no stale shared entry can
		// name one of its checkpoints.
		l.ckptGen = uint64(time.Now().UnixNano())
	}
	if ckOK && l.shared != nil {
		r, ok, err := l.shared.lookup(l.sharedKey, gen)
		if err != nil {
			return err
		}
		if ok && r > ck.recovery {
			ck.recovery = r
			// Keep the advance in the file the next flush writes.
			l.shared.record(l.sharedKey, gen, r)
		}
	}
	if !ckOK && len(bases) > 0 {
		l.log.Warn("no valid checkpoint; treating sealed segments as durable and scanning the last", "segments", len(bases))
	}
	if ckOK {
		if bases, err = l.finishDeletion(bases, hasIndex, ck.start); err != nil {
			return err
		}
	}

	truncated := false // recovery cut a torn tail off the active segment
	for i, base := range bases {
		// Segments are opened lazily, through the file cache: a sealed
		// segment whose index holds is not opened at all until it is read.
		seg := &segment{base: base, path: join(l.dir, segmentName(base)), maxTS: -1}
		size, err := l.fs.Stat(seg.path)
		if err != nil {
			return fmt.Errorf("logstore: size of %s: %w", seg.path, err)
		}
		seg.f = l.cfg.Files.lazy(l.fs, seg.path, l.urgeSync)
		l.segs = append(l.segs, seg)
		if i < len(bases)-1 {
			if err := l.loadSealed(seg, size, hasIndex[base]); err != nil {
				return err
			}
		} else if truncated, err = l.recoverActive(seg, size, ck.recovery, hasIndex[base]); err != nil {
			return err
		}
		if i > 0 && l.segs[i-1].next != base {
			return fmt.Errorf("%w: segment %s starts at %d but the one before ends at %d", ErrCorrupt, seg.path, base, l.segs[i-1].next)
		}
	}
	if len(l.segs) == 0 {
		base := int64(0)
		if ckOK {
			base = ck.start
		}
		if err := l.createSegment(base); err != nil {
			return err
		}
	}
	active := l.segs[len(l.segs)-1]
	active.rollTime = l.cfg.Now().Add(l.cfg.RollInterval)
	if ckOK && active.next < ck.recovery {
		return fmt.Errorf("%w: log ends at %d but offsets up to %d were fsynced", ErrCorrupt, active.next, ck.recovery)
	}

	start := l.segs[0].base
	if ckOK && ck.start > start {
		start = min(ck.start, active.next)
	}
	l.start.Store(start)
	if err := l.dropSegmentsBelowStartLocked(); err != nil {
		return err
	}
	// What survived a process crash may still be only in the page cache:
	// make it durable before calling it durable. When the checkpoint
	// already vouches for the whole segment (a clean stop, or a crash with
	// nothing appended since the last checkpoint), every byte was fsynced
	// before it was written and the fsync is skipped: a start after a clean
	// stop then opens no segment file at all, which is what lets ten
	// thousand partitions start within their open-file limit.
	if !ckOK || active.next != ck.recovery || truncated {
		if err := active.f.Sync(); err != nil {
			return fmt.Errorf("logstore: fsync %s: %w", active.path, err)
		}
	}
	l.durable.Store(active.next)
	l.durablePos = segmentPos{base: active.base, size: active.size, next: active.next, maxTS: active.maxTS}
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	c := checkpoint{recovery: active.next, start: start}
	if ckOK && ck == c {
		// A clean shutdown left exactly this checkpoint: a start writes
		// nothing, so it works on a full or read-only-at-the-moment disk.
		l.lastCkpt, l.lastCkptTime = c, l.cfg.Now()
		return nil
	}
	if err := l.writeCheckpointLocked(c); err != nil {
		// The old checkpoint stays valid (its recovery point is lower, so
		// it only widens the torn-tail window); the syncer retries.
		l.log.Warn("could not record the recovered checkpoint; will retry", "err", err)
	}
	return nil
}

// finishDeletion removes segments wholly below the checkpointed log start:
// DeleteBefore and retention record the new start durably before removing
// segments, and a power loss between the removals and their directory sync
// can keep an older segment while losing a newer one. Such a leftover is not
// data (the recorded start already deleted it), and it must not be checked
// for continuity with the segments after it. bases is sorted.
func (l *Log) finishDeletion(bases []int64, hasIndex map[int64]bool, start int64) ([]int64, error) {
	keep := 0
	for i, b := range bases {
		if b <= start {
			keep = i // the segment holding start (or the last before it)
		}
	}
	if keep == 0 {
		return bases, nil
	}
	for _, b := range bases[:keep] {
		l.log.Info("removing a segment below the log start (a deletion interrupted by a crash)", "segment", segmentName(b), "log_start", start)
		if err := l.fs.Remove(join(l.dir, segmentName(b))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("logstore: remove %s: %w", segmentName(b), err)
		}
		if hasIndex[b] {
			if err := l.fs.Remove(join(l.dir, indexName(b))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("logstore: remove %s: %w", indexName(b), err)
			}
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return nil, fmt.Errorf("logstore: fsync directory %s: %w", l.dir, err)
	}
	return bases[keep:], nil
}

// loadSealed loads a sealed segment's persisted index, or rebuilds it by
// scanning; a sealed segment was fsynced when it was rolled, so any damage
// in it is below the durable point.
func (l *Log) loadSealed(seg *segment, size int64, hasIndex bool) error {
	if hasIndex {
		b, err := readWholeFile(l.fs, join(l.dir, indexName(seg.base)), 64+size)
		if err == nil && seg.decodeIndex(b, size) == nil {
			return nil
		}
		l.log.Warn("rebuilding damaged index", "segment", seg.path)
	}
	res, err := seg.scan(seg.f, size, l.cfg.IndexIntervalBytes)
	if err != nil {
		return fmt.Errorf("logstore: read %s: %w", seg.path, err)
	}
	if res.badErr != nil {
		return fmt.Errorf("%w: sealed segment %s: %v", ErrCorrupt, seg.path, res.badErr)
	}
	if err := l.cfg.Disk.Do(func() error { return writeFileAtomic(l.fs, l.dir, indexName(seg.base), seg.encodeIndex()) }); err != nil {
		// The index is rebuilt in memory; persisting it only saves the
		// next start a scan.
		l.log.Warn("could not persist a rebuilt index", "segment", seg.path, "err", err)
	}
	return nil
}

// recoverActive scans the last segment and truncates a torn tail, unless the
// damage lies below the recovery point; it reports whether it truncated. When an index persisted for the
// active segment covers a prefix of it (all of it after a clean close), only
// the bytes beyond are scanned: the prefix was durable when indexed, like a
// sealed segment, and is validated batch by batch when read.
func (l *Log) recoverActive(seg *segment, size, recoveryPoint int64, hasIndex bool) (bool, error) {
	scan := func() (scanResult, error) { return seg.scan(seg.f, size, l.cfg.IndexIntervalBytes) }
	if hasIndex {
		b, err := readWholeFile(l.fs, join(l.dir, indexName(seg.base)), 64+size)
		if err == nil && seg.decodeIndexPrefix(b, size) == nil && seg.next <= max(recoveryPoint, seg.base) {
			l.indexed = segmentPos{base: seg.base, size: seg.size, next: seg.next, maxTS: seg.maxTS}
			scan = func() (scanResult, error) { return seg.resume(seg.f, size, l.cfg.IndexIntervalBytes) }
		}
	}
	res, err := scan()
	if err != nil {
		return false, fmt.Errorf("logstore: read %s: %w", seg.path, err)
	}
	if res.badErr == nil {
		return false, nil
	}
	if seg.next < recoveryPoint {
		return false, fmt.Errorf("%w: %s at offset %d (recovery point %d): %v", ErrCorrupt, seg.path, seg.next, recoveryPoint, res.badErr)
	}
	l.log.Warn("truncating torn tail", "segment", seg.path, "offset", seg.next, "position", res.valid, "bytes", size-res.valid, "reason", res.badErr)
	if err := seg.f.Truncate(res.valid); err != nil {
		return false, fmt.Errorf("logstore: truncate %s: %w", seg.path, err)
	}
	// A stale index of this segment (it was sealed once, then truncated
	// back into the active one) must not outlive the truncation.
	l.indexed = segmentPos{}
	if err := l.fs.Remove(join(l.dir, indexName(seg.base))); err == nil {
		return true, l.fs.SyncDir(l.dir)
	}
	return true, nil
}

// createSegment adds a new, empty active segment and makes its directory
// entry durable before any batch can be acknowledged in it.
func (l *Log) createSegment(base int64) error {
	seg := &segment{base: base, path: join(l.dir, segmentName(base)), next: base, maxTS: -1}
	// Nothing is written to it yet, so the cache may close it when idle.
	f, err := l.cfg.Files.create(l.fs, seg.path, l.urgeSync, func() (f File, err error) {
		err = l.cfg.Disk.Do(func() (err error) {
			f, err = l.fs.Create(seg.path)
			return err
		})
		return f, err
	})
	if err != nil {
		return fmt.Errorf("logstore: create %s: %w", seg.path, noSpace(err))
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("logstore: fsync directory %s: %w", l.dir, err)
	}
	seg.f = f
	seg.rollTime = l.cfg.Now().Add(l.cfg.RollInterval)
	l.segs = append(l.segs, seg)
	return nil
}

func (l *Log) active() *segment { return l.segs[len(l.segs)-1] }

// Append writes one whole v2 record batch at the end of the log and returns
// once write(2) has taken it. The log assigns the base offset and writes it
// into batch[0:8]. The batch is validated first (length, magic, CRC-32C).
func (l *Log) Append(batch []byte) (AppendInfo, error) {
	return l.appendTelling(batch, l.kick)
}

// AppendSyncNow is Append for a caller that is about to wait for the batch
// to be durable (acks=all): the syncer starts its fsync at once instead of
// after BackgroundSyncDelay, woken once, rather than woken by the append's
// kick and again by the waiter.
func (l *Log) AppendSyncNow(batch []byte) (AppendInfo, error) {
	return l.appendTelling(batch, l.urgent)
}

// appendTelling appends batch and then signals the syncer on wake (kick or
// urgent).
func (l *Log) appendTelling(batch []byte, wake chan struct{}) (AppendInfo, error) {
	if l.cfg.UseReserve {
		return l.appendReserved(batch, wake)
	}
	return l.appendOnce(batch, false, wake)
}

// appendOnce appends batch; a record append (reserved false) is refused
// while the disk is full, so that records never take the space the disk
// reserve gave back for metadata.
func (l *Log) appendOnce(batch []byte, reserved bool, wake chan struct{}) (AppendInfo, error) {
	h, err := ParseBatch(batch)
	if err != nil {
		return AppendInfo{}, err
	}
	if !reserved && l.cfg.Disk.RefusesRecords() {
		return AppendInfo{}, fmt.Errorf("logstore: %s: %w: records wait until space is freed", l.dir, ErrNoSpace)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return AppendInfo{}, ErrClosed
	}
	if p := l.poison.Load(); p != nil {
		return AppendInfo{}, *p
	}
	seg := l.active()
	if seg.size > 0 && (seg.size+int64(len(batch)) > l.cfg.SegmentBytes || !l.cfg.Now().Before(seg.rollTime)) {
		if err := l.rollLocked(); err != nil {
			return AppendInfo{}, err
		}
		seg = l.active()
	}
	h.BaseOffset = seg.next
	SetBaseOffset(batch, h.BaseOffset)
	// The leader epoch, like the base offset, is the broker's to set and is
	// not covered by the CRC; stamping a known value lets recovery and reads
	// detect damage to those four bytes too.
	binary.BigEndian.PutUint32(batch[12:], uint32(leaderEpoch))
	pos := seg.size
	if _, err := seg.f.WriteAt(batch, pos); err != nil {
		if errors.Is(err, errReopen) {
			// The file could not be reopened: nothing was written.
			return AppendInfo{}, fmt.Errorf("logstore: write %s: %w", seg.path, err)
		}
		// Take back a partial write so the file stays a sequence of whole
		// batches; if even that fails the file is in an unknown state.
		if terr := seg.f.Truncate(pos); terr != nil {
			l.poisonLocked(fmt.Errorf("truncate after failed write: %w", terr))
		}
		err = noSpace(err)
		l.cfg.Disk.Observe(err)
		return AppendInfo{}, fmt.Errorf("logstore: write %s: %w", seg.path, err)
	}
	seg.track(h, pos, len(batch), l.cfg.IndexIntervalBytes)
	select {
	case wake <- struct{}{}:
	default:
	}
	return AppendInfo{BaseOffset: h.BaseOffset, LastOffset: h.LastOffset(), Position: pos}, nil
}

// AppendUsingReserve is Append for the few records that must be written
// when the disk is full (transaction markers): a write that fails for want of
// space draws on the disk reserve and is tried again.
func (l *Log) AppendUsingReserve(batch []byte) (AppendInfo, error) {
	return l.appendReserved(batch, l.kick)
}

func (l *Log) appendReserved(batch []byte, wake chan struct{}) (AppendInfo, error) {
	var info AppendInfo
	err := l.cfg.Disk.Do(func() (err error) {
		info, err = l.appendOnce(batch, true, wake)
		return err
	})
	return info, err
}

// AppendDurable appends and waits until an fsync covers the batch.
func (l *Log) AppendDurable(ctx context.Context, batch []byte) (AppendInfo, error) {
	info, err := l.AppendSyncNow(batch)
	if err != nil {
		return info, err
	}
	return info, l.WaitDurable(ctx, info.LastOffset+1)
}

// rollLocked seals the active segment (fsync, persist its index) and starts a
// new one. The new segment file is created only after the old one is
// durable, which is why every segment but the last is below the durable
// point on recovery.
func (l *Log) rollLocked() error {
	old := l.active()
	if err := old.f.Sync(); err != nil {
		l.poisonLocked(fmt.Errorf("fsync %s: %w", old.path, err))
		return *l.poison.Load()
	}
	if err := l.cfg.Disk.Do(func() error { return writeFileAtomic(l.fs, l.dir, indexName(old.base), old.encodeIndex()) }); err != nil {
		return fmt.Errorf("logstore: write index of %s: %w", old.path, err)
	}
	if err := l.createSegment(old.next); err != nil {
		return err
	}
	l.waitMu.Lock()
	l.durablePos = segmentPos{base: old.next, next: old.next, maxTS: -1}
	l.waitMu.Unlock()
	l.advanceDurable(old.next)
	return nil
}

// poisonLocked records a failed fsync; every later write and wait fails.
func (l *Log) poisonLocked(cause error) {
	err := fmt.Errorf("%w: %v", ErrPoisoned, cause)
	if l.poison.CompareAndSwap(nil, &err) {
		l.log.Error("log poisoned: refusing further writes", "err", cause)
	}
	l.waitMu.Lock()
	close(l.advanced)
	l.advanced = make(chan struct{})
	l.waitMu.Unlock()
}

func (l *Log) advanceDurable(off int64) {
	l.waitMu.Lock()
	defer l.waitMu.Unlock()
	if off > l.durable.Load() {
		l.durable.Store(off)
		close(l.advanced)
		l.advanced = make(chan struct{})
	}
}

// StartOffset is the first offset still in the log.
func (l *Log) StartOffset() int64 { return l.start.Load() }

// EndOffset is the offset the next appended record will get.
func (l *Log) EndOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.active().next
}

// DurableOffset is the offset below which every record is fsynced. The
// broker serves nothing at or above it, so a consumer never sees a record
// that a power loss could take back.
func (l *Log) DurableOffset() int64 { return l.durable.Load() }

// Err returns the poisoning error, or nil while the log is healthy.
func (l *Log) Err() error {
	if p := l.poison.Load(); p != nil {
		return *p
	}
	return nil
}

// Close fsyncs the log, records a checkpoint and closes its files.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	close(l.quit)
	<-l.done

	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if l.poison.Load() == nil {
		active := l.active()
		// Nothing appended since the last fsync: skip it rather than
		// reopen a file the cache closed only to fsync nothing.
		if l.durable.Load() != active.next {
			err = active.f.Sync()
		}
		if err == nil {
			l.advanceDurable(active.next)
			if active.size-l.indexedSizeLocked(active) >= min(1<<20, l.cfg.ActiveIndexInterval) {
				// The next start then reads this segment's index instead of
				// the whole segment.
				pos := segmentPos{base: active.base, size: active.size, next: active.next, maxTS: active.maxTS}
				l.writeActiveIndexLocked(active, pos)
			}
			c := checkpoint{recovery: active.next, start: l.start.Load()}
			if l.shared != nil && c.start == l.lastCkpt.start {
				// The final recovery point goes to the shared file, which
				// whoever closes the data directory writes once for every
				// log (Disk.FlushRecoveryPoints): closing ten thousand
				// partitions is then not ten thousand checkpoint writes.
				// Should that write not happen, the next start treats this
				// log as after a crash: it validates and fsyncs the tail.
				l.shared.record(l.sharedKey, l.ckptGen, c.recovery)
				l.lastCkpt = c
			} else {
				err = l.writeCheckpointLocked(c)
			}
		}
	}
	l.waitMu.Lock()
	close(l.advanced) // wake waiters; they see closed and give up
	l.advanced = make(chan struct{})
	l.waitMu.Unlock()
	if cerr := l.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, s := range l.segs {
		if s.f != nil {
			errs = append(errs, s.f.Close())
		}
	}
	return errors.Join(errs...)
}

// indexedSizeLocked is how many bytes of seg its persisted index covers;
// ckptMu must be held.
func (l *Log) indexedSizeLocked(seg *segment) int64 {
	if l.indexed.base != seg.base {
		return 0
	}
	return l.indexed.size
}

// writeActiveIndexLocked persists the index of the active segment's durable
// prefix pos; ckptMu and (at least) a read lock on mu must be held. A
// failure only costs the next start a longer scan.
func (l *Log) writeActiveIndexLocked(seg *segment, pos segmentPos) {
	b := seg.encodeIndexPrefix(pos.size, pos.next, pos.maxTS)
	if err := l.cfg.Disk.Do(func() error { return writeFileAtomic(l.fs, l.dir, indexName(seg.base), b) }); err != nil {
		l.log.Warn("could not persist the active segment's index", "segment", seg.path, "err", err)
		return
	}
	l.indexed = pos
}

// writeCheckpointLocked persists c in the log's own checkpoint file, with a
// new generation, so that no advance recorded for an earlier one in the
// shared file applies to it; ckptMu must be held. A generation is used up
// even when the write fails, since the file may hold it after a crash.
func (l *Log) writeCheckpointLocked(c checkpoint) error {
	l.ckptGen++
	gen := l.ckptGen
	if err := l.cfg.Disk.Do(func() error { return writeFileAtomic(l.fs, l.dir, checkpointName, encodeCheckpoint(c, gen)) }); err != nil {
		return fmt.Errorf("logstore: write checkpoint: %w", err)
	}
	l.lastCkpt, l.lastCkptTime = c, l.cfg.Now()
	return nil
}
