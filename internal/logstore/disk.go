package logstore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrNoSpace wraps write failures caused by a full disk (ENOSPC, EDQUOT).
// The write is taken back and nothing is acknowledged; the log stays healthy
// and accepts writes again once space is freed.
var ErrNoSpace = errors.New("logstore: no space left on device")

// IsNoSpace reports whether err is a full disk or an exhausted quota.
func IsNoSpace(err error) bool {
	return errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// noSpace marks err as ErrNoSpace when it is a full disk.
func noSpace(err error) error {
	if err != nil && !errors.Is(err, ErrNoSpace) && IsNoSpace(err) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// Disk watches the data directory's space and keeps a reserve for the
// writes that must not fail when it runs out.
//
// A full disk refuses new records (the producer retries, nothing
// acknowledged is lost), but metadata must still be written: deleting a
// topic to free space rewrites the catalog, a start rewrites checkpoints,
// a transaction marker ends a transaction so the last stable offset moves,
// an offset commit lets consumers progress. Each of those needs a few
// blocks. Disk keeps a reserve file (space.reserve, idem.disk.reserve.bytes)
// and, when such a write fails with ENOSPC, gives back a chunk of it and
// retries; the reserve grows back once space returns. Record appends never
// draw on it, so producers alone cannot eat it.
//
// A nil *Disk is valid: Do just runs the write, Observe does nothing.
type Disk struct {
	fs     FS
	dir    string // data directory
	path   string // reserve file
	target int64
	log    *slog.Logger
	now    func() time.Time

	mu       sync.Mutex // guards reserved and the reserve file
	reserved int64

	full      atomic.Bool
	fullSince atomic.Int64 // unix ms when the disk was found full
	noSpace   atomic.Int64 // ENOSPC errors seen
	drawn     atomic.Int64 // times the reserve was drawn on

	// A disk that hovers at the edge (a little space free, batches larger
	// than it retried by their producers) goes full and clear many times a
	// second. The state follows every change, the log does not: a full or
	// clear line is written at most once per diskLogEvery, the next one
	// saying how many changes went unlogged.
	lastFullLog, lastClearLog atomic.Int64 // unix ms of the last line of each kind
	unloggedFull, unloggedClr atomic.Int64

	syncObs atomic.Pointer[SyncObserver] // see ObserveSyncs (syncer.go)

	// files bounds the open segment files of every log in the data
	// directory (filecache.go).
	files *FileCache
	// points is the shared recovery-point file of the directory's logs
	// (recoverypoints.go).
	points *sharedPoints
	// batcher gathers the logs' group-commit fsyncs into syncs of the
	// whole file system when many logs need one at once (fsbatch.go).
	batcher fsBatcher
}

// sharedPoints returns the data directory's shared recovery points; nil for
// a nil Disk (each log then writes its own checkpoint file).
func (d *Disk) sharedPoints() *sharedPoints {
	if d == nil {
		return nil
	}
	return d.points
}

// Files returns the open-file cache the data directory's logs share (its
// limit starts at DefaultOpenFiles); nil for a nil Disk.
func (d *Disk) Files() *FileCache {
	if d == nil {
		return nil
	}
	return d.files
}

// reserveChunk is how much of the reserve one failed metadata write frees.
const reserveChunk = 256 << 10

// ReserveFileName is the reserve's name in the data directory.
const ReserveFileName = "space.reserve"

// OpenDisk opens the reserve of dataDir without writing anything (a start
// that refuses must leave the directory untouched); Maintain creates or
// resizes it. reserveBytes is its target size; 0 keeps no reserve.
func OpenDisk(fsys FS, dataDir string, reserveBytes int64, logger *slog.Logger) (*Disk, error) {
	if logger == nil {
		logger = slog.Default()
	}
	d := &Disk{fs: fsys, dir: dataDir, path: join(dataDir, ReserveFileName), target: reserveBytes, log: logger, now: time.Now,
		files: NewFileCache(DefaultOpenFiles)}
	d.points = &sharedPoints{d: d}
	d.batcher.fs, _ = fsys.(FileSystemSyncer)
	d.batcher.dir = dataDir
	d.batcher.solo.Store(DefaultSoloSyncs)
	if size, err := fsys.Stat(d.path); err == nil {
		d.reserved = size
	}
	return d, nil
}

// growLocked extends the reserve toward its target while the file system has
// room for it and as much again to spare; it writes real zeros, so the
// blocks are allocated, not a sparse promise.
func (d *Disk) growLocked() {
	if d.reserved >= d.target {
		return
	}
	want := d.target - d.reserved
	if free, err := d.FreeBytes(); err != nil || free < 2*want {
		return
	}
	f, err := d.fs.OpenReadWrite(d.path)
	if err != nil {
		if f, err = d.fs.Create(d.path); err != nil {
			return
		}
	}
	defer f.Close()
	zeros := make([]byte, min(want, 1<<20))
	for d.reserved < d.target {
		n := min(int64(len(zeros)), d.target-d.reserved)
		if _, err := f.WriteAt(zeros[:n], d.reserved); err != nil {
			f.Truncate(d.reserved)
			return
		}
		d.reserved += n
	}
	if err := f.Sync(); err != nil {
		d.log.Warn("disk reserve: fsync failed", "err", err)
	}
}

// shrinkLocked frees n bytes of the reserve (all of it when n exceeds it).
func (d *Disk) shrinkLocked(n int64) bool {
	if d.reserved <= 0 {
		return false
	}
	f, err := d.fs.OpenReadWrite(d.path)
	if err != nil {
		return false
	}
	defer f.Close()
	to := max(0, d.reserved-n)
	if err := f.Truncate(to); err != nil {
		return false
	}
	d.reserved = to
	return true
}

// Do runs a metadata write; if it fails for want of space, it frees a chunk
// of the reserve and tries again, until the write succeeds or the reserve is
// gone.
func (d *Disk) Do(write func() error) error {
	err := noSpace(write())
	for d != nil && IsNoSpace(err) {
		d.Observe(err)
		d.mu.Lock()
		freed := d.shrinkLocked(reserveChunk)
		left := d.reserved
		d.mu.Unlock()
		if !freed {
			return err
		}
		d.drawn.Add(1)
		d.log.Warn("disk full: drew on the disk reserve for a metadata write", "reserve_left_bytes", left)
		err = noSpace(write())
	}
	return err
}

// Observe records the outcome of a write: a full disk is logged once, with
// the free space, until space returns.
func (d *Disk) Observe(err error) {
	if d == nil || !IsNoSpace(err) {
		return
	}
	d.noSpace.Add(1)
	d.markFull(err)
}

// markFull enters the full state (records refused until RefusesRecords finds
// enough space again), logging it at most once per diskLogEvery.
func (d *Disk) markFull(err error) {
	if d.full.CompareAndSwap(false, true) {
		now := d.now().UnixMilli()
		d.fullSince.Store(now)
		if !logDue(&d.lastFullLog, &d.unloggedFull, now) {
			return
		}
		free, _ := d.FreeBytes()
		d.mu.Lock()
		left := d.reserved
		d.mu.Unlock()
		d.log.Error("disk full: new records are refused with KAFKA_STORAGE_ERROR (clients retry) until space is freed; reads, deletes and restarts keep working",
			"dir", d.dir, "free_bytes", free, "reserve_left_bytes", left, "err", err,
			"unlogged_since_last", d.unloggedFull.Swap(0))
	}
}

// diskLogEvery bounds how often the full and clear lines are written.
const diskLogEvery = 30 * time.Second

// logDue reports whether a line whose last one was at *last may be written
// at now (and records it), or counts it in *unlogged.
func logDue(last, unlogged *atomic.Int64, now int64) bool {
	prev := last.Load()
	if prev != 0 && now-prev < diskLogEvery.Milliseconds() {
		unlogged.Add(1)
		return false
	}
	return last.CompareAndSwap(prev, now)
}

// RefusesRecords reports whether a record append must be refused: the disk
// was found full, and the space now free does not cover what the reserve
// gave back plus a chunk. Without it, the first metadata write that drew on
// the reserve would free space that producers fill at once (the soak found
// that), and the reserve would drain a chunk at a time. Once enough space is
// free, the full state clears here, so producing resumes at the next write.
func (d *Disk) RefusesRecords() bool {
	if d == nil || !d.full.Load() {
		return false
	}
	free, err := d.FreeBytes()
	if err != nil {
		return false // the file system cannot tell: let the write find out
	}
	if free < d.shortfall()+reserveChunk {
		return true
	}
	d.cleared()
	return false
}

// shortfall is how much the reserve is below its target.
func (d *Disk) shortfall() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return max(0, d.target-d.reserved)
}

func (d *Disk) cleared() {
	if d.full.CompareAndSwap(true, false) {
		now := d.now().UnixMilli()
		if !logDue(&d.lastClearLog, &d.unloggedClr, now) {
			return
		}
		free, _ := d.FreeBytes()
		d.log.Info("disk space available again", "dir", d.dir, "free_bytes", free,
			"full_for", time.Duration(now-d.fullSince.Load())*time.Millisecond,
			"unlogged_since_last", d.unloggedClr.Swap(0))
	}
}

// Maintain is called periodically: it notices space that came back without a
// write to prove it, and grows the reserve back.
func (d *Disk) Maintain() {
	if d == nil {
		return
	}
	if d.full.Load() {
		d.RefusesRecords() // clears the full state when space came back
	}
	if !d.full.Load() {
		d.mu.Lock()
		if d.reserved > d.target {
			d.shrinkLocked(d.reserved - d.target)
		}
		d.growLocked()
		d.mu.Unlock()
		// A reserve that cannot be made whole, with a chunk to spare, is a
		// full disk even before a write fails: the state RefusesRecords
		// keeps until that much is free. Without this, a broker restarted
		// on a full disk reported itself healthy and took records into
		// the space its drawn-on reserve needs, until a write hit ENOSPC.
		if free, err := d.FreeBytes(); err == nil && free < d.shortfall()+reserveChunk {
			d.markFull(fmt.Errorf("%w: %d bytes free, the reserve is %d bytes short", ErrNoSpace, free, d.shortfall()))
		}
	}
}

// FreeBytes is the space left on the data directory's file system, or an
// error when the file system cannot tell.
func (d *Disk) FreeBytes() (int64, error) {
	sr, ok := d.fs.(SpaceReporter)
	if !ok {
		return 0, errors.New("logstore: the file system does not report free space")
	}
	return sr.FreeBytes(d.dir)
}

// DiskStatus is a snapshot for health and metrics.
type DiskStatus struct {
	Full          bool
	FullSince     time.Time
	FreeBytes     int64 // -1 when unknown
	ReserveBytes  int64
	NoSpaceErrors int64
	ReserveDrawn  int64
}

// Status reports the disk's state.
func (d *Disk) Status() DiskStatus {
	if d == nil {
		return DiskStatus{FreeBytes: -1}
	}
	st := DiskStatus{Full: d.full.Load(), NoSpaceErrors: d.noSpace.Load(), ReserveDrawn: d.drawn.Load(), FreeBytes: -1}
	if st.Full {
		st.FullSince = time.UnixMilli(d.fullSince.Load())
	}
	if free, err := d.FreeBytes(); err == nil {
		st.FreeBytes = free
	}
	d.mu.Lock()
	st.ReserveBytes = d.reserved
	d.mu.Unlock()
	return st
}
