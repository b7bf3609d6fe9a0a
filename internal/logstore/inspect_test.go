package logstore

import (
	"errors"
	"strings"
	"testing"
)

// TestInspectAndRepair: Inspect finds damage below the recovery point
// without writing; Open refuses that log; Repair, asked explicitly, cuts the
// log back to its last valid batch, keeps everything it removes in
// quarantine, and the log opens and serves every batch before the damage.
func TestInspectAndRepair(t *testing.T) {
	img := buildCorruptionImage(t)
	// Damage the batch at offset 5, in a sealed segment.
	var sealed string
	names, _ := img.fs.ReadDir("/p")
	for _, n := range names {
		if strings.HasSuffix(n, ".log") {
			sealed = "/p/" + n
			break
		}
	}
	data, err := img.fs.ReadFile(sealed)
	if err != nil {
		t.Fatal(err)
	}
	pos5 := -1
	for pos, off := 0, 0; pos < len(data); off++ {
		if off == 5 {
			pos5 = pos
			break
		}
		pos += 12 + int(be32(data[pos+8:]))
	}
	if pos5 < 0 {
		t.Fatal("test setup: offset 5 is not in the first segment")
	}
	data[pos5+BatchHeaderSize] ^= 0xff
	img.fs.WriteFile(sealed, data)
	syncsBefore := img.fs.Syncs()

	in, err := Inspect(img.fs, "/p", RecoveryPoints{})
	if err != nil {
		t.Fatal(err)
	}
	if in.Damage == nil || in.Damage.Offset != 5 || !in.Damage.BelowRecoveryPoint || in.Damage.Segment != sealed || len(in.Damage.DropSegments) == 0 {
		t.Fatalf("inspection: %+v damage %+v", in, in.Damage)
	}
	if img.fs.Syncs() != syncsBefore {
		t.Fatal("Inspect wrote to the file system")
	}
	// A sealed segment with a valid index is trusted at open; its damage is
	// refused when it is read.
	if l, err := Open(img.fs, "/p", Config{Logger: quietLogger}); !errors.Is(err, ErrCorrupt) {
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = collect(l)
		l.Close()
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("a log damaged below its recovery point was served: %v", err)
		}
	}

	rep, err := Repair(img.fs, "/p", "/quarantine/p", RecoveryPoints{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.NewEnd != 5 || len(rep.Moved) != len(in.Damage.DropSegments)+1 {
		t.Fatalf("repair report: %+v", rep)
	}
	var kept int64
	qnames, _ := img.fs.ReadDir("/quarantine/p")
	for _, n := range qnames {
		sz, _ := img.fs.Stat("/quarantine/p/" + n)
		kept += sz
	}
	if kept != in.Damage.DropBytes {
		t.Fatalf("quarantine holds %d bytes, the repair dropped %d", kept, in.Damage.DropBytes)
	}
	l, err := Open(img.fs, "/p", Config{Logger: quietLogger})
	if err != nil {
		t.Fatalf("open after repair: %v", err)
	}
	defer l.Close()
	got, _, err := collect(l)
	if err != nil || len(got) != 5 || l.EndOffset() != 5 {
		t.Fatalf("after repair: %d batches, end %d, err %v", len(got), l.EndOffset(), err)
	}
	for off, p := range got {
		if img.payloads[off] != p {
			t.Fatalf("offset %d serves %q, written %q", off, p, img.payloads[off])
		}
	}
	// New appends continue at the repaired end.
	if info := mustAppendDurable(t, l, testBatch(1, 1, []byte("after"))); info.BaseOffset != 5 {
		t.Fatalf("first append after repair at %d", info.BaseOffset)
	}
}

// TestRepairLeavesAHealthyLogAlone: without damage Repair changes nothing.
func TestRepairLeavesAHealthyLogAlone(t *testing.T) {
	img := buildCorruptionImage(t)
	syncs := img.fs.Syncs()
	rep, err := Repair(img.fs, "/p", "/q", RecoveryPoints{})
	if err != nil || rep.Before.Damage != nil || len(rep.Moved) != 0 || img.fs.Syncs() != syncs {
		t.Fatalf("repair of a healthy log: %+v %v", rep, err)
	}
	if _, err := img.fs.ReadDir("/q"); err == nil {
		t.Fatal("quarantine created for a healthy log")
	}
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// TestDeletionInterruptedByPowerLoss: DeleteBefore records the new start,
// then removes segments; a power loss before the directory sync may keep an
// older segment while a newer one is gone. Recovery must finish the recorded
// deletion, not call the log corrupt.
func TestDeletionInterruptedByPowerLoss(t *testing.T) {
	mem := NewMemFS()
	l := mustOpen(t, mem, "/p", Config{Logger: quietLogger, SegmentBytes: 300})
	for i := range 20 {
		mustAppendDurable(t, l, testBatch(1, int64(i), []byte("payload-0123456789")))
	}
	if len(l.segs) < 4 {
		t.Fatalf("test setup: only %d segments", len(l.segs))
	}
	oldest := l.segs[0].path
	kept, err := mem.ReadFile(oldest)
	if err != nil {
		t.Fatal(err)
	}
	start := l.segs[2].base + 1 // inside the third segment
	if err := l.DeleteBefore(start); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// The oldest segment's removal did not survive, the second one's did.
	f, err := mem.Create(oldest)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(kept)
	f.Sync()
	f.Close()
	mem.SyncDir("/p")
	l, err = Open(mem, "/p", Config{Logger: quietLogger, SegmentBytes: 300})
	if err != nil {
		t.Fatalf("open after an interrupted deletion: %v", err)
	}
	defer l.Close()
	if l.StartOffset() != start {
		t.Fatalf("log start %d, want %d", l.StartOffset(), start)
	}
	if _, err := mem.Stat(oldest); err == nil {
		t.Fatal("the leftover segment below the start was kept")
	}
	got, _, err := collect(l)
	if err != nil || len(got) != int(l.EndOffset()-l.StartOffset()) {
		t.Fatalf("read after recovery: %d batches, err %v", len(got), err)
	}
}
