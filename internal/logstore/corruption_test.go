package logstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// corruptionImage is a crashed log: batches [0, durableEnd) were covered by
// a checkpoint (the recovery point), later ones were fsynced but no
// checkpoint vouches for them, as after a crash between checkpoints.
type corruptionImage struct {
	fs         *MemFS
	payloads   []string // by offset (one record per batch)
	positions  []int64  // byte position of each batch in the active segment, -1 if sealed
	activePath string
	durableEnd int64
}

func buildCorruptionImage(t *testing.T) corruptionImage {
	t.Helper()
	fsys := NewMemFS()
	cfg := Config{SegmentBytes: 1500, Logger: quietLogger, CheckpointInterval: time.Hour}
	l := mustOpen(t, fsys, "/p", cfg)
	img := corruptionImage{}
	add := func(l *Log, i int) {
		p := fmt.Sprintf("payload-%03d-%s", i, string(make([]byte, i%7)))
		info := mustAppendDurable(t, l, testBatch(1, int64(1000+i), []byte(p)))
		img.payloads = append(img.payloads, p)
		img.positions = append(img.positions, info.Position)
	}
	for i := range 24 {
		add(l, i)
	}
	if err := l.Close(); err != nil { // checkpoint: recovery point 24
		t.Fatal(err)
	}
	l = mustOpen(t, fsys, "/p", cfg)
	for i := 24; i < 30; i++ {
		add(l, i)
	}
	img.fs = fsys.CrashClone(CrashOptions{}) // crash: no new checkpoint
	l.Close()
	img.durableEnd = 24
	active := l.segs[len(l.segs)-1]
	img.activePath = active.path
	for i := range img.positions {
		if int64(i) < active.base {
			img.positions[i] = -1
		}
	}
	if img.positions[20] < 0 {
		t.Fatalf("test setup: offset 20 should be in the active segment (base %d)", active.base)
	}
	return img
}

// checkServed opens the damaged image and asserts the outcome: recovery
// either refuses with ErrCorrupt, or every batch it serves is exactly what
// was written there and the log ends at wantEnd (or, when wantEnd < 0, the
// read of the whole log is refused with ErrCorrupt).
func checkServed(t *testing.T, img corruptionImage, fsys *MemFS, wantRefusal bool, wantEnd int64, what string) {
	t.Helper()
	l, err := Open(fsys, "/p", Config{Logger: quietLogger})
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: recovery failed with %v, want ErrCorrupt or success", what, err)
		}
		if !wantRefusal {
			t.Fatalf("%s: recovery refused (%v) but the damage was a torn tail", what, err)
		}
		return
	}
	defer l.Close()
	got, _, err := collect(l)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: reading failed with %v, want ErrCorrupt", what, err)
		}
		if !wantRefusal {
			t.Fatalf("%s: read refused (%v) after a torn-tail recovery", what, err)
		}
		return
	}
	for off, p := range got {
		if img.payloads[off] != p {
			t.Fatalf("%s: offset %d serves %q, written %q", what, off, p, img.payloads[off])
		}
	}
	if wantRefusal {
		t.Fatalf("%s: damage below the durable point was served silently (log ends at %d)", what, l.EndOffset())
	}
	if l.EndOffset() != wantEnd || int64(len(got)) != wantEnd-l.StartOffset() {
		t.Fatalf("%s: log ends at %d with %d batches, want end %d", what, l.EndOffset(), len(got), wantEnd)
	}
}

// TestTruncationAtEveryByte is C2: cutting the active segment at every byte
// of its last batches is a torn tail above the recovery point (truncate to
// the last whole batch) and lost acknowledged data below it (refuse).
func TestTruncationAtEveryByte(t *testing.T) {
	img := buildCorruptionImage(t)
	data, err := img.fs.ReadFile(img.activePath)
	if err != nil {
		t.Fatal(err)
	}
	from := img.positions[21] // three batches below the recovery point, then the tail
	for cut := from; cut < int64(len(data)); cut++ {
		fsys := img.fs.CrashClone(CrashOptions{})
		if err := fsys.WriteFile(img.activePath, data[:cut]); err != nil {
			t.Fatal(err)
		}
		// The log keeps every batch that ends at or before the cut.
		keep := int64(0)
		for off, pos := range img.positions {
			end := int64(len(data))
			if off+1 < len(img.positions) {
				end = img.positions[off+1]
			}
			if pos >= 0 && end <= cut {
				keep = int64(off) + 1
			}
		}
		checkServed(t, img, fsys, keep < img.durableEnd, keep, fmt.Sprintf("cut at byte %d", cut))
	}
}

// TestBitFlips is C2's other half: a flipped bit anywhere is caught (CRC,
// magic, length, leader epoch or offset continuity); above the recovery
// point the log is truncated before the damaged batch, below it the
// partition refuses to serve.
func TestBitFlips(t *testing.T) {
	img := buildCorruptionImage(t)
	rng := rand.New(rand.NewPCG(7, 7))
	names, _ := img.fs.ReadDir("/p")
	var segs []string
	for _, n := range names {
		if _, ok := parseSegmentName(n, ".log"); ok {
			segs = append(segs, "/p/"+n)
		}
	}
	for trial := range 400 {
		fsys := img.fs.CrashClone(CrashOptions{})
		path := segs[rng.IntN(len(segs))]
		if trial%2 == 0 {
			path = img.activePath // half the flips hit the tail segment
		}
		data, _ := fsys.ReadFile(path)
		bit := rng.IntN(len(data) * 8)
		data[bit/8] ^= 1 << (bit % 8)
		if err := fsys.WriteFile(path, data); err != nil {
			t.Fatal(err)
		}
		// Which batch did the flip land in?
		base, _ := parseSegmentName(path[len("/p/"):], ".log")
		hit := base
		if path == img.activePath {
			for off, pos := range img.positions {
				if pos >= 0 && pos <= int64(bit/8) {
					hit = int64(off)
				}
			}
		}
		what := fmt.Sprintf("trial %d: bit %d of %s (batch %d)", trial, bit, path, hit)
		if path != img.activePath {
			checkServed(t, img, fsys, true, -1, what)
			continue
		}
		checkServed(t, img, fsys, hit < img.durableEnd, hit, what)
	}
}

// TestTruncationOnRealFiles runs a torn tail through the OS file system.
func TestTruncationOnRealFiles(t *testing.T) {
	dir := t.TempDir()
	fsys := OSFS()
	l := mustOpen(t, fsys, dir, Config{Logger: quietLogger, CheckpointInterval: time.Hour})
	var last AppendInfo
	for i := range 10 {
		last = mustAppendDurable(t, l, testBatch(1, 1, []byte(fmt.Sprintf("real-%d", i))))
	}
	path := join(dir, segmentName(0))
	// Simulate a crash between checkpoints: rewind the checkpoint, cut the file.
	l.ckptMu.Lock()
	if err := l.writeCheckpointLocked(checkpoint{recovery: 5}); err != nil {
		t.Fatal(err)
	}
	l.ckptMu.Unlock()
	f, err := fsys.OpenReadWrite(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(last.Position + 10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l.closeFiles() // the process "dies" without Close
	l2 := mustOpen(t, fsys, dir, Config{Logger: quietLogger})
	defer l2.Close()
	if l2.EndOffset() != 9 {
		t.Fatalf("after a torn last batch the log ends at %d, want 9", l2.EndOffset())
	}
	if size, _ := fsys.Stat(path); size != last.Position {
		t.Fatalf("segment is %d bytes after recovery, want %d", size, last.Position)
	}
}
