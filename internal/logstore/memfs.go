package logstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// MemFS is an in-memory FS that remembers, for every file, its bytes as of
// the last Sync and, for every directory, its entries as of the last SyncDir.
// CrashClone turns that into the state a power loss could leave behind, in the
// manner of Pebble's StrictMem: synced data always survives, un-synced data
// and un-synced directory entries may or may not.
//
// Directories themselves are treated as durable once created. MemFS is safe
// for concurrent use.
type MemFS struct {
	mu sync.Mutex // guards every field below and all inode contents
	// dirs maps a cleaned directory path to its entries.
	dirs map[string]*memDir
	// syncErr, when set, makes every later Sync and SyncDir fail.
	syncErr error
	// hook is called around every Sync and SyncDir, without mu held.
	hook  func(SyncEvent)
	syncs int
	// capacity, when positive, is the total bytes files may hold; writes
	// beyond it fail with ENOSPC after writing what fits, as a full disk does.
	capacity int64
	// openSegs counts the open handles of segment (.log) files, peakSegs
	// the most open at once, opens every open of each name (OpenSegments).
	openSegs, peakSegs int
	opens              map[string]int
	fsSyncs            int      // SyncFileSystem calls
	foreign            []string // directories on "another file system" (FileSystemID)
}

// SyncEvent describes one sync as seen by a hook: N counts syncs from 1,
// Done is false just before the sync takes effect and true just after.
type SyncEvent struct {
	N    int
	Name string
	Dir  bool
	// FileSystem marks a sync of every file (SyncFileSystem); Name is the
	// directory it was asked for.
	FileSystem bool
	Done       bool
}

type memDir struct {
	entries map[string]*memInode // the live directory
	durable map[string]*memInode // the directory as of its last SyncDir
}

type memInode struct {
	data   []byte
	synced []byte // contents as of the last Sync; nil means never synced
}

// NewMemFS returns an empty in-memory file system.
func NewMemFS() *MemFS {
	return &MemFS{dirs: map[string]*memDir{}}
}

// SetCapacity limits the bytes all files together may hold (0 = no limit);
// a write that would exceed it writes what fits and fails with ENOSPC.
func (m *MemFS) SetCapacity(bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.capacity = bytes
}

// FreeBytes implements SpaceReporter: the capacity left, or a large number
// when there is no limit.
func (m *MemFS) FreeBytes(string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.capacity <= 0 {
		return 1 << 50, nil
	}
	return max(0, m.capacity-m.usedLocked()), nil
}

// UsedBytes is the total size of every file.
func (m *MemFS) UsedBytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.usedLocked()
}

// usedLocked sums the bytes of every file reachable from a directory.
func (m *MemFS) usedLocked() int64 {
	seen := map[*memInode]bool{}
	var n int64
	for _, d := range m.dirs {
		for _, ino := range d.entries {
			if !seen[ino] {
				seen[ino] = true
				n += int64(len(ino.data))
			}
		}
	}
	return n
}

// roomLocked returns how many of want more bytes fit.
func (m *MemFS) roomLocked(want int64) int64 {
	if m.capacity <= 0 || want <= 0 {
		return want
	}
	return max(0, min(want, m.capacity-m.usedLocked()))
}

// SetSyncError makes every later Sync and SyncDir fail with err (nil heals).
func (m *MemFS) SetSyncError(err error) {
	m.mu.Lock()
	m.syncErr = err
	m.mu.Unlock()
}

// SetSyncHook installs fn to be called before and after every sync; tests use
// it to take a CrashClone at each sync point.
func (m *MemFS) SetSyncHook(fn func(SyncEvent)) {
	m.mu.Lock()
	m.hook = fn
	m.mu.Unlock()
}

// Syncs reports how many Sync and SyncDir calls have been made.
func (m *MemFS) Syncs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncs
}

// CrashOptions shapes what a simulated power loss keeps beyond synced state.
type CrashOptions struct {
	// Rand chooses what survives; nil keeps exactly the synced state.
	Rand *rand.Rand
	// TornTail is the chance that kept un-synced bytes are partly garbage,
	// as when the last write's pages reach the disk half written.
	TornTail float64
}

// CrashClone returns the file system a power loss at this instant could
// leave: every file keeps its synced bytes; with opts.Rand, a random prefix of
// the un-synced tail may survive too (possibly torn), and each directory entry
// changed since its directory's last sync may or may not have survived.
func (m *MemFS) CrashClone(opts CrashOptions) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := opts.Rand
	out := NewMemFS()
	for path, d := range m.dirs {
		nd := &memDir{entries: map[string]*memInode{}, durable: map[string]*memInode{}}
		names := map[string]bool{}
		for n := range d.entries {
			names[n] = true
		}
		for n := range d.durable {
			names[n] = true
		}
		sorted := make([]string, 0, len(names))
		for n := range names {
			sorted = append(sorted, n)
		}
		slices.Sort(sorted) // deterministic for a given seed
		for _, n := range sorted {
			live, durable := d.entries[n], d.durable[n]
			ino := durable
			if live != durable && r != nil && r.IntN(2) == 0 {
				ino = live // the un-synced directory change reached the disk
			}
			if ino == nil {
				continue
			}
			c := &memInode{data: crashContents(ino, r, opts.TornTail)}
			c.synced = slices.Clone(c.data)
			nd.entries[n], nd.durable[n] = c, c
		}
		out.dirs[path] = nd
	}
	return out
}

// KillClone returns the file system a process crash (kill -9) at this instant
// leaves: the page cache survives, so every file keeps its live bytes and
// every directory its live entries, but what was never synced is still only
// as durable as before. A later CrashClone of the result shows what a power
// loss after the restart would keep.
func (m *MemFS) KillClone() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := NewMemFS()
	copies := map[*memInode]*memInode{}
	cp := func(ino *memInode) *memInode {
		if ino == nil {
			return nil
		}
		if c, ok := copies[ino]; ok {
			return c
		}
		c := &memInode{data: slices.Clone(ino.data)}
		if ino.synced != nil {
			c.synced = slices.Clone(ino.synced)
		}
		copies[ino] = c
		return c
	}
	for path, d := range m.dirs {
		nd := &memDir{entries: map[string]*memInode{}, durable: map[string]*memInode{}}
		for n, ino := range d.entries {
			nd.entries[n] = cp(ino)
		}
		for n, ino := range d.durable {
			nd.durable[n] = cp(ino)
		}
		out.dirs[path] = nd
	}
	return out
}

// crashContents is what survives of one file after a power loss.
func crashContents(ino *memInode, r *rand.Rand, torn float64) []byte {
	synced := slices.Clone(ino.synced)
	if synced == nil {
		synced = []byte{}
	}
	if r == nil {
		return synced
	}
	if len(ino.data) <= len(synced) || !slices.Equal(ino.data[:len(synced)], synced) {
		// Shrunk or rewritten since the last sync: either version may survive.
		if r.IntN(2) == 0 {
			return slices.Clone(ino.data)
		}
		return synced
	}
	tail := ino.data[len(synced):]
	keep := r.IntN(len(tail) + 1)
	out := append(synced, tail[:keep]...)
	if keep > 0 && r.Float64() < torn {
		// Garble a random stretch of the kept tail, as a torn page would.
		from := len(synced) + r.IntN(keep)
		for i := from; i < len(out) && i < from+512; i++ {
			out[i] = byte(r.Uint32())
		}
	}
	return out
}

// ReadFile returns a copy of a file's live contents (for tests).
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ino.data), nil
}

// WriteFile replaces a file's live and synced contents (for corruption tests).
func (m *MemFS) WriteFile(name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.lookupLocked(name)
	if err != nil {
		return err
	}
	ino.data = slices.Clone(data)
	ino.synced = slices.Clone(data)
	return nil
}

func split(name string) (dir, base string) {
	name = filepath.Clean(name)
	return filepath.Dir(name), filepath.Base(name)
}

func (m *MemFS) dirLocked(dir string, op, name string) (*memDir, error) {
	d, ok := m.dirs[filepath.Clean(dir)]
	if !ok {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return d, nil
}

func (m *MemFS) lookupLocked(name string) (*memInode, error) {
	dir, base := split(name)
	d, err := m.dirLocked(dir, "open", name)
	if err != nil {
		return nil, err
	}
	ino, ok := d.entries[base]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return ino, nil
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir, base := split(name)
	d, err := m.dirLocked(dir, "create", name)
	if err != nil {
		return nil, err
	}
	ino, ok := d.entries[base]
	if ok {
		ino.data = ino.data[:0:0]
	} else {
		ino = &memInode{data: []byte{}}
		d.entries[base] = ino
	}
	return m.newFileLocked(ino, name, false), nil
}

// newFileLocked returns a new handle of ino and counts it.
func (m *MemFS) newFileLocked(ino *memInode, name string, readOnly bool) *memFile {
	if m.opens == nil {
		m.opens = map[string]int{}
	}
	m.opens[name]++
	f := &memFile{fs: m, ino: ino, name: name, readOnly: readOnly}
	if f.isSegment() {
		m.openSegs++
		m.peakSegs = max(m.peakSegs, m.openSegs)
	}
	return f
}

// OpenSegments reports how many handles of segment files (names ending in
// .log) are open now and the most that were open at once since the last
// call, which starts a new peak from the current count.
func (m *MemFS) OpenSegments() (now, peak int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now, peak = m.openSegs, m.peakSegs
	m.peakSegs = m.openSegs
	return now, peak
}

// Opens reports how many times name was opened or created.
func (m *MemFS) Opens(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opens[name]
}

// OpenReadWrite implements FS.
func (m *MemFS) OpenReadWrite(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	return m.newFileLocked(ino, name, false), nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	return m.newFileLocked(ino, name, true), nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir, base := split(name)
	d, err := m.dirLocked(dir, "remove", name)
	if err != nil {
		return err
	}
	if _, ok := d.entries[base]; !ok {
		if _, isDir := m.dirs[filepath.Clean(name)]; isDir {
			return m.removeDirLocked(filepath.Clean(name), false)
		}
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(d.entries, base)
	return nil
}

// RemoveAll implements FS.
func (m *MemFS) RemoveAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.removeDirLocked(filepath.Clean(dir), true)
}

func (m *MemFS) removeDirLocked(dir string, recursive bool) error {
	if d, ok := m.dirs[dir]; ok && !recursive && len(d.entries) > 0 {
		return &fs.PathError{Op: "remove", Path: dir, Err: errors.New("directory not empty")}
	}
	for p := range m.dirs {
		if p == dir || strings.HasPrefix(p, dir+string(filepath.Separator)) {
			delete(m.dirs, p)
		}
	}
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	od, ob := split(oldname)
	nd, nb := split(newname)
	odir, err := m.dirLocked(od, "rename", oldname)
	if err != nil {
		return err
	}
	ndir, err := m.dirLocked(nd, "rename", newname)
	if err != nil {
		return err
	}
	ino, ok := odir.entries[ob]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	delete(odir.entries, ob)
	ndir.entries[nb] = ino
	return nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if _, ok := m.dirs[p]; !ok {
			m.dirs[p] = &memDir{entries: map[string]*memInode{}, durable: map[string]*memInode{}}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// ReadDir implements FS: files and subdirectories, sorted.
func (m *MemFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	clean := filepath.Clean(dir)
	d, err := m.dirLocked(clean, "readdir", dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for n := range d.entries {
		names = append(names, n)
	}
	for p := range m.dirs {
		if p != clean && filepath.Dir(p) == clean {
			names = append(names, filepath.Base(p))
		}
	}
	slices.Sort(names)
	return names, nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(dir string) error {
	return m.doSync(dir, true, func() error {
		d, err := m.dirLocked(dir, "syncdir", dir)
		if err != nil {
			return err
		}
		d.durable = make(map[string]*memInode, len(d.entries))
		for n, ino := range d.entries {
			d.durable[n] = ino
		}
		return nil
	})
}

// SyncFileSystem implements FileSystemSyncer as syncfs(2) does for file
// data: every file's contents become durable. Directory entries are left
// as they are (ext4's journal commit would make them durable too, but the
// log never relies on that: it syncs its directories itself).
func (m *MemFS) SyncFileSystem(dir string) error {
	m.mu.Lock()
	m.fsSyncs++
	m.mu.Unlock()
	return m.sync(SyncEvent{Name: dir, FileSystem: true}, func() error {
		for path, d := range m.dirs {
			if m.foreignLocked(path) {
				continue // another file system: not covered
			}
			for _, ino := range d.entries {
				ino.synced = slices.Clone(ino.data)
			}
		}
		return nil
	})
}

// FileSystemID implements FileSystemSyncer: a MemFS is one file system,
// except below a directory marked with SetForeignFileSystem.
func (m *MemFS) FileSystemID(dir string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.dirs[filepath.Clean(dir)]; !ok {
		return 0, &fs.PathError{Op: "stat", Path: dir, Err: fs.ErrNotExist}
	}
	if m.foreignLocked(dir) {
		return 2, nil
	}
	return 1, nil
}

func (m *MemFS) foreignLocked(dir string) bool {
	for _, f := range m.foreign {
		if dir == f || strings.HasPrefix(dir, f+"/") {
			return true
		}
	}
	return false
}

// SetForeignFileSystem makes dir and what is below it count as another
// file system (a mount or a symlink to another disk): SyncFileSystem of
// the rest does not make its files durable.
func (m *MemFS) SetForeignFileSystem(dir string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.foreign = append(m.foreign, dir)
}

// FileSystemSyncs reports how many SyncFileSystem calls were made.
func (m *MemFS) FileSystemSyncs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fsSyncs
}

// doSync runs apply under mu, bracketed by hook calls made without mu.
func (m *MemFS) doSync(name string, dir bool, apply func() error) error {
	return m.sync(SyncEvent{Name: name, Dir: dir}, apply)
}

func (m *MemFS) sync(ev SyncEvent, apply func() error) error {
	m.mu.Lock()
	m.syncs++
	n, hook := m.syncs, m.hook
	m.mu.Unlock()
	ev.N = n
	if hook != nil {
		hook(ev)
	}
	m.mu.Lock()
	err := m.syncErr
	if err == nil {
		err = apply()
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if hook != nil {
		ev.Done = true
		hook(ev)
	}
	return nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.lookupLocked(name)
	if err != nil {
		return 0, err
	}
	return int64(len(ino.data)), nil
}

type memFile struct {
	fs       *MemFS
	ino      *memInode
	name     string
	readOnly bool
	closed   bool // guarded by fs.mu
}

var errReadOnly = errors.New("memfs: file opened read-only")

func (f *memFile) check(write bool) error {
	if f.closed {
		return fmt.Errorf("memfs: %s: %w", f.name, fs.ErrClosed)
	}
	if write && f.readOnly {
		return fmt.Errorf("memfs: %s: %w", f.name, errReadOnly)
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("memfs: negative offset %d", off)
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(true); err != nil {
		return 0, err
	}
	fit := f.fs.roomLocked(int64(len(p)))
	f.ino.data = append(f.ino.data, p[:fit]...)
	if fit < int64(len(p)) {
		return int(fit), &fs.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	return len(p), nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(true); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("memfs: negative offset %d", off)
	}
	end := off + int64(len(p))
	if grow := end - int64(len(f.ino.data)); grow > 0 {
		if fit := f.fs.roomLocked(grow); fit < grow {
			// Write what fits, as a full disk does, then fail.
			n := max(0, int64(len(f.ino.data))+fit-off)
			if n > 0 {
				f.ino.data = append(f.ino.data, make([]byte, fit)...)
				copy(f.ino.data[off:], p[:n])
			}
			return int(n), &fs.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
		}
		f.ino.data = append(f.ino.data, make([]byte, grow)...)
	}
	copy(f.ino.data[off:], p)
	return len(p), nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(true); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("memfs: negative size %d", size)
	}
	if size <= int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size:size]
	} else {
		grow := size - int64(len(f.ino.data))
		if f.fs.roomLocked(grow) < grow {
			return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.ENOSPC}
		}
		f.ino.data = append(f.ino.data, make([]byte, grow)...)
	}
	return nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	err := f.check(false)
	f.fs.mu.Unlock()
	if err != nil {
		return err
	}
	return f.fs.doSync(f.name, false, func() error {
		f.ino.synced = slices.Clone(f.ino.data)
		return nil
	})
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(false); err != nil {
		return 0, err
	}
	return int64(len(f.ino.data)), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return fmt.Errorf("memfs: %s: %w", f.name, fs.ErrClosed)
	}
	f.closed = true
	if f.isSegment() {
		f.fs.openSegs--
	}
	return nil
}

func (f *memFile) isSegment() bool { return strings.HasSuffix(f.name, ".log") }
