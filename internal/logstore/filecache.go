package logstore

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"sync"
)

// FileCache bounds how many segment files the logs sharing it keep open
// (issue 17: ten thousand partitions must not hold ten thousand file
// descriptors). Each segment holds a cachedFile, a File that opens its path
// on first use and may be closed again when idle: the least recently used
// idle files are closed once more than the limit are open, and reopened on
// the next read, write or fsync.
//
// A file is idle, and may be closed, only when
//   - no operation is running on it (each ReadAt, WriteAt, Sync, Truncate
//     and Size pins it while it runs, and pin lets a caller hold it open
//     across several), so a read in progress is never broken; and
//   - every byte written through it has been fsynced through it: closing a
//     file whose dirty pages are not yet written back could let a
//     write-back error go unseen by the fsync of the next descriptor, and
//     the log's durability rests on fsync reporting it (fsyncgate, see the
//     package doc). The log's syncer fsyncs every append within
//     BackgroundSyncDelay, and at once when the limit is exceeded and
//     only files awaiting their fsync could make room (urge), so an active
//     segment becomes idle soon after its partition stops receiving
//     records.
//
// So at most max(limit, files in use or awaiting their fsync) files are
// open: the limit is exceeded only by files pinned at the same moment (one
// per read, append or fsync in flight) and by files written but not yet
// fsynced (a burst of appends to more partitions than the limit, for the
// time of one fsync each), never by idle ones, and such a file is closed as
// soon as it is released and fsynced. Waiting for a slot instead would
// bound the count strictly but could deadlock: a reader waiting for a slot
// under its log's read lock, while the only file that could free one is
// that log's active segment, whose syncer needs the same lock behind a
// queued appender.
//
// Idle active segments are not closed after an idle time of their own: the
// limit alone decides, so a broker with fewer partitions than the limit
// never reopens a file, and one with more keeps the busiest ones open.
//
// A segment removed by retention, truncation or compaction is forgotten
// (Close): its file is closed once no operation uses it and it is never
// opened again, because its path may by then name another file (the
// cleaner renames a new segment over the first one it replaces). An open
// descriptor still reads the old bytes after the path is reused or
// removed; a reopen by path would not, so a file that must outlive the
// change of its path is pinned before the change (compact_swap.go).
//
// A FileCache is safe for concurrent use; a nil *FileCache is not.
type FileCache struct {
	mu    sync.Mutex
	limit int       // 0: no limit
	open  int       // files open, counting opens in flight
	opens int64     // files opened or created, ever
	idle  list.List // of *cachedFile that may be closed, least recently used at the back
	// unsynced holds the files not in use whose writes await an fsync
	// and whose log was not yet asked for it early (urge).
	unsynced list.List
}

// DefaultOpenFiles is the limit of a FileCache made by OpenDisk
// (idem.log.open.files.max). It is a fixed number, not a share of
// RLIMIT_NOFILE, because Go raises the soft limit to the hard one at start
// (often 2^20 or more), which would bound nothing; 1024 leaves the usual
// hard limits room for connections, and a broker with up to 1024 busy
// segments never reopens one.
const DefaultOpenFiles = 1024

// NewFileCache returns a cache that keeps at most limit idle segment files
// open; 0 or less means no limit.
func NewFileCache(limit int) *FileCache {
	c := &FileCache{}
	c.SetLimit(limit)
	return c
}

// SetLimit changes the limit, closing idle files beyond it now.
func (c *FileCache) SetLimit(limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit = max(limit, 0)
	c.evictLocked()
}

// Limit returns the limit (0: none).
func (c *FileCache) Limit() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limit
}

// Open returns how many segment files are open now.
func (c *FileCache) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// Opens returns how many segment files were opened or created through the
// cache: a count that rises much faster than segments are created means
// the limit is too low for the files in use.
func (c *FileCache) Opens() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opens
}

// lazy returns a File for path, written by an earlier process, that is
// opened (read-write) on first use.
// urge, if not nil, asks the file's log to fsync it soon, without
// blocking: it is called, with the cache locked, when unsynced writes keep
// the file open while the limit is exceeded.
func (c *FileCache) lazy(fsys FS, path string, urge func()) *cachedFile {
	return &cachedFile{c: c, fs: fsys, path: path, urge: urge, inherited: true}
}

// create opens a new file on path with create, which must return it with
// nothing written to it that is not fsynced, so that it counts against the
// limit from the start and may be closed when idle.
func (c *FileCache) create(fsys FS, path string, urge func(), create func() (File, error)) (*cachedFile, error) {
	c.reserve()
	f, err := create()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.open--
		return nil, err
	}
	c.opens++
	cf := &cachedFile{c: c, fs: fsys, path: path, f: f, urge: urge}
	c.settleLocked(cf)
	c.evictLocked()
	return cf, nil
}

// adopt takes in f, already open on path and with nothing written to it
// that is not fsynced (a cleaned segment, open since the cleaner created
// it).
func (c *FileCache) adopt(fsys FS, path string, urge func(), f File) *cachedFile {
	cf, _ := c.create(fsys, path, urge, func() (File, error) { return f, nil })
	return cf
}

// reserve counts a file about to be opened, closing idle ones first if the
// limit is reached, so that the open never takes the count past it while
// idle files could make room.
func (c *FileCache) reserve() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open++
	c.evictLocked()
}

// evictLocked closes the least recently used idle files while more than
// the limit are open. It closes them with mu held, so that the count never
// runs below the files really open: closing a clean file is quick, and a
// close error loses nothing (everything written through it was fsynced).
// If that is not enough, it asks the logs of the files awaiting an fsync
// to do it now, so that they can be closed sooner.
func (c *FileCache) evictLocked() {
	for c.limit > 0 && c.open > c.limit && c.idle.Len() > 0 {
		cf := c.idle.Remove(c.idle.Back()).(*cachedFile)
		cf.elem = nil
		cf.f.Close()
		cf.f = nil
		c.open--
	}
	for c.limit > 0 && c.open > c.limit && c.unsynced.Len() > 0 {
		cf := c.unsynced.Remove(c.unsynced.Front()).(*cachedFile)
		cf.elem = nil
		cf.urge() // a non-blocking send to the log's syncer
	}
}

// settleLocked files cf once nothing uses it: at the front of the idle
// list if nothing written through it awaits an fsync, else among the
// unsynced files its log may be urged to fsync.
func (c *FileCache) settleLocked(cf *cachedFile) {
	if cf.pins > 0 || cf.f == nil || cf.forgotten || cf.elem != nil {
		return
	}
	switch {
	case cf.synced == cf.written:
		cf.elem, cf.unsynced = c.idle.PushFront(cf), false
	case cf.urge != nil:
		cf.elem, cf.unsynced = c.unsynced.PushBack(cf), true
	}
}

// unlistLocked takes cf off the idle or unsynced list.
func (c *FileCache) unlistLocked(cf *cachedFile) {
	if cf.elem == nil {
		return
	}
	if cf.unsynced {
		c.unsynced.Remove(cf.elem)
	} else {
		c.idle.Remove(cf.elem)
	}
	cf.elem = nil
}

// errReopen marks a failure to open a file the cache had closed (too
// many open files, say): nothing was read or written, so a log must not
// treat it as a failed write whose effect is unknown.
var errReopen = errors.New("logstore: reopen a segment file")

// errForgotten is returned by any use of a segment file after it was
// closed for good; a log never does that (it forgets a file only with the
// segment gone from its list, under its lock).
var errForgotten = fmt.Errorf("logstore: segment file used after it was closed: %w", fs.ErrClosed)

// cachedFile is a segment's File in a FileCache. Its fields below fs are
// guarded by c.mu.
type cachedFile struct {
	c    *FileCache
	fs   FS
	path string
	urge func() // asks for an early fsync; may be nil

	f       File          // nil while closed
	opening chan struct{} // closed when an open in flight finishes
	pins    int           // operations using f
	elem    *list.Element // in c.idle while idle, or in c.unsynced
	// unsynced: elem is in c.unsynced
	unsynced bool
	// written counts writes and truncations, synced the writes the last
	// successful fsync covered: a file is idle only when they are equal.
	written, synced uint64
	// inherited: the file was written before this process opened it
	// (recovery), and no fsync of it has succeeded since, so its page
	// cache may hold bytes that are not durable.
	inherited bool
	forgotten bool // closed for good: never opened again
}

// pin returns the open file, opening it if need be, and keeps it open until
// the matching unpin. It also returns how many writes an fsync begun now
// covers.
func (cf *cachedFile) pin() (File, uint64, error) {
	c := cf.c
	c.mu.Lock()
	for cf.opening != nil {
		wait := cf.opening
		c.mu.Unlock()
		<-wait
		c.mu.Lock()
	}
	if cf.forgotten {
		c.mu.Unlock()
		return nil, 0, fmt.Errorf("%w: %s", errForgotten, cf.path)
	}
	if cf.f != nil {
		cf.pins++
		c.unlistLocked(cf)
		written := cf.written
		c.mu.Unlock()
		return cf.f, written, nil
	}
	// Open without holding the cache's lock, counting the file from now
	// so that concurrent opens cannot overshoot the limit unseen.
	wait := make(chan struct{})
	cf.opening = wait
	c.open++
	c.evictLocked()
	c.mu.Unlock()

	f, err := cf.fs.OpenReadWrite(cf.path)

	c.mu.Lock()
	defer c.mu.Unlock()
	cf.opening = nil
	close(wait)
	if err == nil && cf.forgotten {
		f.Close()
		err = fmt.Errorf("%w: %s", errForgotten, cf.path)
	}
	if err != nil {
		c.open--
		if !errors.Is(err, errForgotten) {
			err = fmt.Errorf("%w %s: %w", errReopen, cf.path, err)
		}
		return nil, 0, err
	}
	c.opens++
	cf.f = f
	cf.pins++
	return f, cf.written, nil
}

// unpin releases a pin. wrote records a write or truncation done under it;
// synced, when ok, that an fsync covering the first synced writes succeeded.
func (cf *cachedFile) unpin(wrote bool, synced uint64, ok bool) {
	c := cf.c
	c.mu.Lock()
	cf.pins--
	if wrote {
		cf.written++
	}
	if ok && synced > cf.synced {
		cf.synced = synced
	}
	switch {
	case cf.pins > 0:
	case cf.forgotten:
		if cf.f != nil {
			// Closed for good while in use: the log no longer has the
			// segment, so a close error concerns nobody.
			cf.f.Close()
			cf.f = nil
			c.open--
		}
	default:
		c.settleLocked(cf)
		c.evictLocked()
	}
	c.mu.Unlock()
}

func (cf *cachedFile) ReadAt(p []byte, off int64) (int, error) {
	f, _, err := cf.pin()
	if err != nil {
		return 0, err
	}
	defer cf.unpin(false, 0, false)
	return f.ReadAt(p, off)
}

func (cf *cachedFile) WriteAt(p []byte, off int64) (int, error) {
	f, _, err := cf.pin()
	if err != nil {
		return 0, err
	}
	defer cf.unpin(true, 0, false)
	return f.WriteAt(p, off)
}

// Write is not used on segment files, which are written at positions;
// it is here to make cachedFile a File.
func (cf *cachedFile) Write(p []byte) (int, error) {
	return 0, fmt.Errorf("logstore: %s: segment files are written with WriteAt", cf.path)
}

func (cf *cachedFile) Truncate(size int64) error {
	f, _, err := cf.pin()
	if err != nil {
		return err
	}
	defer cf.unpin(true, 0, false)
	return f.Truncate(size)
}

// Sync fsyncs the file. Only a successful fsync makes the writes before it
// count as durable, so a file whose fsync failed is never closed by the
// cache (the log is poisoned and closes it itself). A file the cache
// closed has nothing to fsync (it was closed only once every write through
// it was fsynced) and is not reopened for it, unless an earlier process
// wrote it and its page cache was never fsynced by this one.
func (cf *cachedFile) Sync() error {
	c := cf.c
	c.mu.Lock()
	if cf.f == nil && cf.opening == nil && !cf.forgotten && !cf.inherited && cf.written == cf.synced {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	f, written, err := cf.pin()
	if err != nil {
		return err
	}
	err = f.Sync()
	if err == nil {
		c.mu.Lock()
		cf.inherited = false
		c.mu.Unlock()
	}
	cf.unpin(false, written, err == nil)
	return err
}

// fsSyncBegin and fsSyncDone bracket a sync of the whole file system that
// stands in for cf's fsync (fsbatch.go): what was written through cf when
// it began is durable once it succeeded, and the file may then be closed
// like one fsynced through it.
func (cf *cachedFile) fsSyncBegin() uint64 {
	cf.c.mu.Lock()
	defer cf.c.mu.Unlock()
	return cf.written
}

func (cf *cachedFile) fsSyncDone(covered uint64) {
	c := cf.c
	c.mu.Lock()
	defer c.mu.Unlock()
	cf.inherited = false
	if covered <= cf.synced {
		return
	}
	cf.synced = covered
	if cf.pins == 0 && !cf.forgotten && cf.unsynced {
		c.unlistLocked(cf)
		c.settleLocked(cf)
		c.evictLocked()
	}
}

func (cf *cachedFile) Size() (int64, error) {
	f, _, err := cf.pin()
	if err != nil {
		return 0, err
	}
	defer cf.unpin(false, 0, false)
	return f.Size()
}

// Close forgets the file for good: it is closed now, or by the last
// operation still using it, and never opened again.
func (cf *cachedFile) Close() error {
	c := cf.c
	c.mu.Lock()
	for cf.opening != nil {
		wait := cf.opening
		c.mu.Unlock()
		<-wait
		c.mu.Lock()
	}
	if cf.forgotten {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s", errForgotten, cf.path)
	}
	cf.forgotten = true
	c.unlistLocked(cf)
	var f File
	if cf.pins == 0 && cf.f != nil {
		f, cf.f = cf.f, nil
		c.open--
	}
	c.mu.Unlock()
	if f != nil {
		return f.Close()
	}
	return nil
}
