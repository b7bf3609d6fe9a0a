package logstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// With a limit of N, logs with many more segments than N, appended to and
// read from concurrently, never have more than N segment files open, and
// every read returns what was appended.
func TestFileCacheBoundsOpenSegmentsWhileReadsAndAppendsInterleave(t *testing.T) {
	const limit, logsN, workers = 8, 24, 4
	fsys := NewMemFS()
	files := NewFileCache(limit)
	// Segments of about three batches, so the logs hold ~100 files.
	cfg := Config{Files: files, SegmentBytes: 3 * (BatchHeaderSize + 16)}
	logs := make([]*Log, logsN)
	for i := range logs {
		logs[i] = mustOpen(t, fsys, fmt.Sprintf("/data/p%d", i), cfg)
	}
	defer func() {
		for _, l := range logs {
			l.Close()
		}
	}()
	fsys.OpenSegments() // start the peak here
	// Each worker owns a slice of the logs for appends (so it knows what
	// each holds) and reads from all of them.
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for n := range 150 {
				l := logs[w+workers*r.IntN(logsN/workers)]
				payload := fmt.Sprintf("w%d-n%09d", w, n)
				info, err := l.AppendDurable(context.Background(), testBatch(1, int64(n), []byte(payload)))
				if err != nil {
					errs <- err
					return
				}
				if got, err := readOne(l, info.BaseOffset); err != nil || got != payload {
					errs <- fmt.Errorf("read back %d: %q, %v; want %q", info.BaseOffset, got, err, payload)
					return
				}
				other := logs[r.IntN(logsN)]
				if end := other.DurableOffset(); end > 0 {
					if _, err := readOne(other, r.Int64N(end)); err != nil {
						errs <- fmt.Errorf("read another log: %w", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	segments := 0
	for _, l := range logs {
		segments += len(l.segs)
	}
	now, peak := fsys.OpenSegments()
	t.Logf("%d segments, %d open at the end, at most %d at once", segments, now, peak)
	if segments < 4*limit {
		t.Fatalf("only %d segments: the test does not put the limit under pressure", segments)
	}
	if peak > limit {
		t.Fatalf("%d segment files were open at once, limit %d", peak, limit)
	}
	if got := files.Open(); got != now {
		t.Fatalf("the cache counts %d open files, the file system %d", got, now)
	}
}

// readOne returns the payload of the batch holding offset.
func readOne(l *Log, offset int64) (string, error) {
	b, err := l.Read(offset, 1, l.DurableOffset())
	if err != nil {
		return "", err
	}
	h, n, err := parseBatchPrefix(b)
	if err != nil {
		return "", err
	}
	if offset < h.BaseOffset || offset > h.LastOffset() {
		return "", fmt.Errorf("read %d returned batch %d..%d", offset, h.BaseOffset, h.LastOffset())
	}
	return payloadOf(b[:n]), nil
}

// A read blocked inside ReadAt keeps its file open while other logs push
// the cache far past its limit, and completes with the right bytes.
func TestFileCacheNeverClosesAFileUnderAReader(t *testing.T) {
	mem := NewMemFS()
	gated := &gatedFS{FS: mem}
	files := NewFileCache(1)
	cfg := Config{Files: files}
	reader := mustOpen(t, gated, "/data/slow", cfg)
	defer reader.Close()
	mustAppendDurable(t, reader, testBatch(1, 1, []byte("kept open")))
	others := make([]*Log, 5)
	for i := range others {
		others[i] = mustOpen(t, mem, fmt.Sprintf("/data/o%d", i), cfg)
		defer others[i].Close()
	}

	entered, release := gated.gate("/data/slow/")
	done := make(chan error, 1)
	go func() {
		got, err := readOne(reader, 0)
		if err == nil && got != "kept open" {
			err = fmt.Errorf("read %q", got)
		}
		done <- err
	}()
	<-entered // the reader is inside ReadAt, its file pinned
	for i, l := range others {
		mustAppendDurable(t, l, testBatch(1, 1, []byte(fmt.Sprint(i))))
		if _, err := readOne(l, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Each of the others was closed when released, to make room: the
	// pinned file holds the one slot.
	if got := files.Open(); got != 1 {
		t.Fatalf("%d files open with one pinned and limit 1, want 1", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the read under eviction failed: %v", err)
	}
	if got := files.Open(); got != 1 {
		t.Fatalf("%d files open once the reader let go, want the limit, 1", got)
	}
}

// A file written through the cache is not closed before an fsync covered
// the write: closing it would leave a later write-back error to a new
// descriptor that may never report it.
func TestFileCacheKeepsUnsyncedFilesOpen(t *testing.T) {
	fsys := NewMemFS()
	if err := fsys.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	createFile(t, fsys, "/d/a.log", nil)
	createFile(t, fsys, "/d/b.log", nil)
	files := NewFileCache(1)
	a, b := files.lazy(fsys, "/d/a.log", nil), files.lazy(fsys, "/d/b.log", nil)
	if _, err := a.WriteAt([]byte("unsynced"), 0); err != nil {
		t.Fatal(err)
	}
	opensOfA := fsys.Opens("/d/a.log")
	// b is opened and, a holding the one slot until its fsync, closed
	// again as soon as it is released.
	for range 3 {
		if _, err := b.Size(); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 8)
	if _, err := a.ReadAt(buf, 0); err != nil || string(buf) != "unsynced" {
		t.Fatalf("read a: %q, %v", buf, err)
	}
	if got := fsys.Opens("/d/a.log"); got != opensOfA {
		t.Fatalf("a was closed with its write not fsynced: reopened %d times", got-opensOfA)
	}
	if now, _ := fsys.OpenSegments(); now != 1 || files.Open() != 1 {
		t.Fatalf("%d files open (cache: %d), want 1: a", now, files.Open())
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	// Fsynced, a may now make room for b, and is reopened to be read.
	if _, err := b.Size(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReadAt(buf, 0); err != nil || string(buf) != "unsynced" {
		t.Fatalf("read a: %q, %v", buf, err)
	}
	if got := fsys.Opens("/d/a.log"); got != opensOfA+1 {
		t.Fatalf("a opened %d more times, want 1 (closed after its fsync to make room, reopened to be read)", got-opensOfA)
	}
	a.Close()
	b.Close()
	if now, _ := fsys.OpenSegments(); now != 0 || files.Open() != 0 {
		t.Fatalf("%d files open (cache: %d) after both were closed", now, files.Open())
	}
}

// Past the limit, a file kept open only by a write awaiting its fsync
// makes its log fsync at once rather than after BackgroundSyncDelay, so
// the file can be closed.
func TestFileCacheUrgesTheFsyncOfFilesBeyondTheLimit(t *testing.T) {
	fsys := NewMemFS()
	files := NewFileCache(1)
	cfg := Config{Files: files, BackgroundSyncDelay: time.Hour}
	a := mustOpen(t, fsys, "/a", cfg)
	defer a.Close()
	b := mustOpen(t, fsys, "/b", cfg)
	defer b.Close()
	mustAppend(t, a, testBatch(1, 1, []byte("a")))
	mustAppend(t, b, testBatch(1, 1, []byte("b")))
	deadline := time.Now().Add(10 * time.Second)
	for files.Open() > 1 || a.DurableOffset() != 1 || b.DurableOffset() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d files open, durable offsets %d and %d: the writes were not fsynced early", files.Open(), a.DurableOffset(), b.DurableOffset())
		}
		time.Sleep(time.Millisecond)
	}
}

// An fsync of a file the cache closed is not worth a reopen when this
// process fsynced everything it wrote through it; it is when an earlier
// process wrote it (recovery must fsync what a crash left in the page
// cache).
func TestFileCacheReopensToFsyncOnlyInheritedFiles(t *testing.T) {
	fsys := NewMemFS()
	if err := fsys.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	createFile(t, fsys, "/d/inherited.log", []byte("from before a crash"))
	createFile(t, fsys, "/d/other.log", nil)
	files := NewFileCache(1)
	own, err := files.create(fsys, "/d/own.log", nil, func() (File, error) { return fsys.Create("/d/own.log") })
	if err != nil {
		t.Fatal(err)
	}
	inherited, other := files.lazy(fsys, "/d/inherited.log", nil), files.lazy(fsys, "/d/other.log", nil)
	if _, err := own.WriteAt([]byte("mine"), 0); err != nil {
		t.Fatal(err)
	}
	if err := own.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := inherited.Size(); err != nil { // read, as recovery scans it
		t.Fatal(err)
	}
	if _, err := other.Size(); err != nil { // closes the other two
		t.Fatal(err)
	}
	opensOwn, opensInherited, syncs := fsys.Opens("/d/own.log"), fsys.Opens("/d/inherited.log"), fsys.Syncs()
	if err := own.Sync(); err != nil {
		t.Fatal(err)
	}
	if fsys.Opens("/d/own.log") != opensOwn || fsys.Syncs() != syncs {
		t.Fatal("a closed file whose writes were all fsynced was reopened to be fsynced again")
	}
	if err := inherited.Sync(); err != nil {
		t.Fatal(err)
	}
	if fsys.Opens("/d/inherited.log") != opensInherited+1 || fsys.Syncs() != syncs+1 {
		t.Fatal("a closed file an earlier process wrote was not reopened and fsynced")
	}
	for _, f := range []*cachedFile{own, inherited, other} {
		f.Close()
	}
}

// A file held open while another file is renamed over its path keeps
// reading its own bytes; once closed for good it is never opened again.
func TestFileCacheHoldsAFileAcrossARenameAndNeverReopensAForgottenOne(t *testing.T) {
	fsys := NewMemFS()
	if err := fsys.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	createFile(t, fsys, "/d/s.log", []byte("old bytes"))
	createFile(t, fsys, "/d/s.cleaned", []byte("new bytes"))
	files := NewFileCache(1)
	old := files.lazy(fsys, "/d/s.log", nil)
	if _, _, err := old.pin(); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Rename("/d/s.cleaned", "/d/s.log"); err != nil {
		t.Fatal(err)
	}
	createFile(t, fsys, "/d/other.log", nil)
	other := files.lazy(fsys, "/d/other.log", nil)
	if _, err := other.Size(); err != nil { // pressure: limit 1, two in use
		t.Fatal(err)
	}
	buf := make([]byte, 9)
	if _, err := old.ReadAt(buf, 0); err != nil || string(buf) != "old bytes" {
		t.Fatalf("held file reads %q, %v; want the old bytes", buf, err)
	}
	opens := fsys.Opens("/d/s.log")
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	old.unpin(false, 0, false)
	if _, err := old.ReadAt(buf, 0); !errors.Is(err, errForgotten) {
		t.Fatalf("read of a forgotten file: %v, want errForgotten", err)
	}
	if err := old.Sync(); !errors.Is(err, errForgotten) {
		t.Fatalf("fsync of a forgotten file: %v, want errForgotten", err)
	}
	if got := fsys.Opens("/d/s.log"); got != opens {
		t.Fatalf("the forgotten file's path was opened again (%d opens, want %d)", got, opens)
	}
	if now, _ := fsys.OpenSegments(); now != 0 || files.Open() != 0 {
		t.Fatalf("%d files open (cache: %d), want none", now, files.Open())
	}
}

// Segments removed by retention and replaced by compaction are never
// opened again, even when the cache closed them before.
func TestFileCacheNeverReopensDeletedOrCompactedSegments(t *testing.T) {
	fsys := NewMemFS()
	clock := newTestClock()
	files := NewFileCache(1)
	l := mustOpen(t, fsys, "/p", Config{Files: files, SegmentBytes: 2 * (BatchHeaderSize + 16), Now: clock.Now})
	defer l.Close()
	for i := range 12 {
		mustAppendDurable(t, l, testBatch(1, int64(i), fmt.Appendf(nil, "record-%09d", i)))
	}
	gone := []string{l.segs[0].path, l.segs[1].path}
	if err := l.DeleteBefore(l.segs[2].base); err != nil {
		t.Fatal(err)
	}
	opens := map[string]int{}
	for _, p := range gone {
		opens[p] = fsys.Opens(p)
	}
	for off := l.StartOffset(); off < l.EndOffset(); off++ {
		if _, err := readOne(l, off); err != nil {
			t.Fatal(err)
		}
	}
	mustAppendDurable(t, l, testBatch(1, 99, []byte("after the deletion")))
	for _, p := range gone {
		if got := fsys.Opens(p); got != opens[p] {
			t.Fatalf("deleted %s opened again: %d opens, want %d", p, got, opens[p])
		}
	}
	if now, _ := fsys.OpenSegments(); now > 1 {
		t.Fatalf("%d segment files open, limit 1", now)
	}
}

// After a cleaner swap, with a cache of one file, the replaced segments'
// files are closed for good (the first one's path now names the new
// segment) and every record reads back.
func TestFileCacheForgetsSegmentsACleanReplaced(t *testing.T) {
	clock := newTestClock()
	files := NewFileCache(1)
	l := mustOpen(t, NewMemFS(), "/p", Config{Files: files, SegmentBytes: 300, IndexIntervalBytes: 200, Logger: quietLogger, Now: clock.Now, CheckpointInterval: time.Hour})
	defer l.Close()
	for i := range 30 {
		mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put(fmt.Sprint("k", i%3), fmt.Sprint(i))))
	}
	l.mu.RLock()
	olds := append([]*segment(nil), l.segs[:len(l.segs)-1]...)
	l.mu.RUnlock()
	if st := clean(t, testCleaner(), l, CleanOptions{}); st.SegmentsReplaced == 0 {
		t.Fatalf("nothing was cleaned: %+v", st)
	}
	for _, o := range olds {
		if _, err := o.f.ReadAt(make([]byte, 1), 0); !errors.Is(err, errForgotten) {
			t.Fatalf("the replaced segment %s still reads (%v): its file was not closed for good", o.path, err)
		}
	}
	recs, _ := readBack(t, l)
	if len(recs) == 0 || len(recs) >= 30 {
		t.Fatalf("%d records read back after cleaning 30 records of 3 keys", len(recs))
	}
	if files.Open() > 1 {
		t.Fatalf("%d files open, limit 1", files.Open())
	}
}

// Recovery opens only the segments it must read: the active one. Sealed
// segments with a valid index are opened when first read.
func TestRecoveryOpensOnlyTheActiveSegment(t *testing.T) {
	fsys := NewMemFS()
	cfg := Config{SegmentBytes: 2 * (BatchHeaderSize + 16)}
	l := mustOpen(t, fsys, "/p", cfg)
	for i := range 10 {
		mustAppendDurable(t, l, testBatch(1, int64(i), fmt.Appendf(nil, "record-%09d", i)))
	}
	var paths []string
	for _, s := range l.segs {
		paths = append(paths, s.path)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, p := range paths {
		before[p] = fsys.Opens(p)
	}
	l = mustOpen(t, fsys, "/p", cfg)
	defer l.Close()
	var opened []string
	for _, p := range paths {
		if fsys.Opens(p) != before[p] {
			opened = append(opened, p)
		}
	}
	if len(paths) < 4 || len(opened) != 1 || opened[0] != paths[len(paths)-1] {
		t.Fatalf("recovery of %d segments opened %v, want only the active one", len(paths), opened)
	}
	if got, err := readOne(l, 0); err != nil || got != "record-000000000" {
		t.Fatalf("read of the first sealed segment: %q, %v", got, err)
	}
}

// createFile writes a durable file outside any cache.
func createFile(t *testing.T, fsys FS, name string, data []byte) {
	t.Helper()
	f, err := fsys.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// A start after a clean stop that indexed the active segment opens no
// segment file: nothing needs reading, and the checkpoint vouches that
// everything was fsynced.
func TestCleanRestartOpensNoSegmentFile(t *testing.T) {
	fsys := NewMemFS()
	cfg := Config{SegmentBytes: 2 * (BatchHeaderSize + 16), ActiveIndexInterval: 1}
	l := mustOpen(t, fsys, "/p", cfg)
	for i := range 7 {
		mustAppendDurable(t, l, testBatch(1, int64(i), fmt.Appendf(nil, "record-%09d", i)))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := fsys.ReadDir("/p")
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, n := range names {
		before[n] = fsys.Opens("/p/" + n)
	}
	syncs := fsys.Syncs()
	l = mustOpen(t, fsys, "/p", cfg)
	defer l.Close()
	for _, n := range names {
		if strings.HasSuffix(n, ".log") && fsys.Opens("/p/"+n) != before[n] {
			t.Fatalf("the start opened %s", n)
		}
	}
	if got := fsys.Syncs(); got != syncs {
		t.Fatalf("the start fsynced %d times", got-syncs)
	}
	if got, err := readOne(l, 6); err != nil || got != "record-000000006" {
		t.Fatalf("read the last record: %q, %v", got, err)
	}
}

// gatedFS holds ReadAt calls on files under a path prefix until released.
type gatedFS struct {
	FS
	mu      sync.Mutex
	prefix  string
	entered chan struct{}
	release chan struct{}
}

func (g *gatedFS) gate(prefix string) (entered chan struct{}, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prefix, g.entered, g.release = prefix, make(chan struct{}), make(chan struct{})
	return g.entered, g.release
}

func (g *gatedFS) OpenReadWrite(name string) (File, error) {
	f, err := g.FS.OpenReadWrite(name)
	return g.wrap(name, f), err
}

func (g *gatedFS) Create(name string) (File, error) {
	f, err := g.FS.Create(name)
	return g.wrap(name, f), err
}

func (g *gatedFS) wrap(name string, f File) File {
	if f == nil || !strings.HasSuffix(name, ".log") {
		return f
	}
	return &gatedFile{File: f, g: g, name: name}
}

type gatedFile struct {
	File
	g    *gatedFS
	name string
}

func (f *gatedFile) ReadAt(p []byte, off int64) (int, error) {
	f.g.mu.Lock()
	var entered, release chan struct{}
	if f.g.prefix != "" && strings.HasPrefix(f.name, f.g.prefix) {
		entered, release = f.g.entered, f.g.release
		f.g.prefix = "" // one read waits
	}
	f.g.mu.Unlock()
	if entered != nil {
		close(entered)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			return 0, errors.New("gatedFS: never released")
		}
	}
	return f.File.ReadAt(p, off)
}
