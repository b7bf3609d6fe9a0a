package logstore

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingFS counts the bytes read from segment (.log) files.
type countingFS struct {
	FS
	read atomic.Int64
}

func (c *countingFS) OpenReadWrite(name string) (File, error) {
	f, err := c.FS.OpenReadWrite(name)
	return c.wrap(name, f, err)
}

func (c *countingFS) Open(name string) (File, error) {
	f, err := c.FS.Open(name)
	return c.wrap(name, f, err)
}
func (c *countingFS) wrap(name string, f File, err error) (File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &countingFile{File: f, n: &c.read}, nil
}

type countingFile struct {
	File
	n *atomic.Int64
}

func (f *countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.n.Add(int64(n))
	return n, err
}

// TestStartReadsOnlyTheTail is issue 9's restart-time defect: a start reads
// the active segment's persisted index and validates only the batches beyond
// it: after a clean stop at most min(1 MiB, ActiveIndexInterval), after a
// crash at most about ActiveIndexInterval.
func TestStartReadsOnlyTheTail(t *testing.T) {
	mem := NewMemFS()
	cfg := Config{Logger: quietLogger, ActiveIndexInterval: 64 << 10, CheckpointInterval: time.Nanosecond}
	l := mustOpen(t, mem, "/p", cfg)
	payload := []byte(strings.Repeat("x", 1000))
	for range 1000 { // ~1 MiB in the active segment
		mustAppendDurable(t, l, testBatch(1, 1, payload))
	}
	size := l.active().size
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cfs := &countingFS{FS: mem}
	l = mustOpen(t, cfs, "/p", cfg)
	if got := cfs.read.Load(); got > 64<<10 {
		t.Fatalf("a start after a clean stop read %d of %d segment bytes", got, size)
	}
	// Append past two more index intervals, then crash (kill -9: the page
	// cache survives, no clean close).
	for range 210 {
		mustAppendDurable(t, l, testBatch(1, 1, payload))
	}
	crashed := mem.KillClone()
	l.Close()
	cfs = &countingFS{FS: crashed}
	l = mustOpen(t, cfs, "/p", cfg)
	defer l.Close()
	if got := cfs.read.Load(); got > 2*(64<<10)+20_000 {
		t.Fatalf("a start after kill -9 read %d bytes; the index covers all but the last ~%d", got, 64<<10)
	}
	got, _, err := collect(l)
	if err != nil || len(got) != 1210 {
		t.Fatalf("after recovery: %d batches, err %v", len(got), err)
	}
}
