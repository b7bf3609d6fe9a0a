package logstore

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// sharedLog opens /data/p on fsys with a Disk for /data, so that its
// recovery-point advances go to the shared file, checkpointing at every
// sync.
func sharedLog(t *testing.T, fsys *MemFS) (*Log, *Disk) {
	t.Helper()
	d, err := OpenDisk(fsys, "/data", 0, quietLogger)
	if err != nil {
		t.Fatal(err)
	}
	return mustOpen(t, fsys, "/data/p", Config{Disk: d, Logger: quietLogger, CheckpointInterval: time.Nanosecond}), d
}

// appendDurable appends n one-record batches and waits for each to be
// fsynced; it returns the byte position of every batch.
func appendDurable(t *testing.T, l *Log, from, n int) []int64 {
	t.Helper()
	var pos []int64
	for i := from; i < from+n; i++ {
		info := mustAppendDurable(t, l, testBatch(1, int64(1000+i), []byte(fmt.Sprintf("r%03d", i))))
		pos = append(pos, info.Position)
	}
	return pos
}

// flushShared waits until the shared file records at least offset for the
// log (the syncer records advances after each fsync).
func flushShared(t *testing.T, fsys *MemFS, want int64) RecoveryPoints {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		points, err := LoadRecoveryPoints(fsys, "/data")
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := points.entries["p"]; ok && e.Offset >= want {
			return points
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shared recovery-point file never recorded offset %d: %+v", want, points.entries)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSharedRecoveryPointMakesDamageBelowItCorruption: an advance recorded
// only in the shared file still counts after a kill -9: a flipped byte in a
// batch below it is acknowledged data damaged (the log refuses to open),
// not a torn tail to cut off silently. It is what a per-log checkpoint
// write used to give, at one file write per interval for the whole
// directory instead of one per log.
func TestSharedRecoveryPointMakesDamageBelowItCorruption(t *testing.T) {
	fsys := NewMemFS()
	// Written and closed without a Disk: its own checkpoint says 5.
	l := mustOpen(t, fsys, "/data/p", Config{Logger: quietLogger})
	appendDurable(t, l, 0, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ = sharedLog(t, fsys)
	pos := appendDurable(t, l, 5, 20)
	flushShared(t, fsys, 25)
	ck, _, ok, err := readCheckpoint(fsys, "/data/p")
	if err != nil || !ok || ck.recovery != 5 {
		t.Fatalf("test setup: the per-log checkpoint should still say 5: %+v %v %v", ck, ok, err)
	}
	killed := fsys.KillClone()
	l.Close()
	seg := "/data/p/" + segmentName(0)
	data, err := killed.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[pos[10]+40] ^= 0x40 // inside batch 15, under its CRC
	if err := killed.WriteFile(seg, data); err != nil {
		t.Fatal(err)
	}
	d, _ := OpenDisk(killed, "/data", 0, quietLogger)
	_, err = Open(killed, "/data/p", Config{Disk: d, Logger: quietLogger})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damage below the shared recovery point: open says %v, want ErrCorrupt", err)
	}
	points, _ := LoadRecoveryPoints(killed, "/data")
	in, err := Inspect(killed, "/data/p", points)
	if err != nil || in.RecoveryPoint != 25 || in.Damage == nil || !in.Damage.BelowRecoveryPoint {
		t.Fatalf("inspect: recovery point %d, damage %+v, err %v; want 25 and damage below it", in.RecoveryPoint, in.Damage, err)
	}
}

// TestSharedRecoveryPointOfAnOlderCheckpointIsIgnored: a truncation lowers
// the recovery point in the log's own checkpoint, with a new generation;
// the shared file still holding the older, higher point must not make the
// shortened log look like lost acknowledged data.
func TestSharedRecoveryPointOfAnOlderCheckpointIsIgnored(t *testing.T) {
	fsys := NewMemFS()
	l, _ := sharedLog(t, fsys)
	appendDurable(t, l, 0, 20)
	before := flushShared(t, fsys, 20)
	if err := l.Truncate(8); err != nil {
		t.Fatal(err)
	}
	after, _ := LoadRecoveryPoints(fsys, "/data")
	if after.entries["p"] != before.entries["p"] {
		t.Fatalf("test setup: the shared file changed with the truncation (%+v -> %+v); the stale entry is what is tested", before.entries["p"], after.entries["p"])
	}
	crashed := fsys.CrashClone(CrashOptions{})
	l.Close()
	d, _ := OpenDisk(crashed, "/data", 0, quietLogger)
	l2, err := Open(crashed, "/data/p", Config{Disk: d, Logger: quietLogger})
	if err != nil {
		t.Fatalf("open after a truncation with a stale shared entry: %v", err)
	}
	defer l2.Close()
	if l2.EndOffset() != 8 {
		t.Fatalf("log ends at %d, want 8", l2.EndOffset())
	}
}

// TestRecoveryPointsFileRefusesWhatItCannotHold: a damaged shared file is
// no points (recovery falls back to the logs' own checkpoints), and a count
// larger than the file could hold sizes nothing.
func TestRecoveryPointsFileRefusesWhatItCannotHold(t *testing.T) {
	good := encodeRecoveryPoints(map[string]RecoveryPoint{"topics/a/0": {Generation: 3, Offset: 42}, "b": {Generation: 1, Offset: 7}})
	got, err := decodeRecoveryPoints(good)
	if err != nil || len(got) != 2 || got["topics/a/0"] != (RecoveryPoint{3, 42}) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for i := range good {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x01
		if _, err := decodeRecoveryPoints(bad); err == nil {
			t.Fatalf("a flipped bit at byte %d went unnoticed", i)
		}
	}
	huge := encodeRecoveryPoints(nil)
	huge[7] = 0xff // count 255 in a file holding none
	if _, err := decodeRecoveryPoints(huge); err == nil {
		t.Fatal("a count the file cannot hold was accepted")
	}
	fsys := NewMemFS()
	if err := fsys.MkdirAll("/data"); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(fsys, "/data/"+RecoveryPointsFileName, good[:len(good)-1]); err != nil {
		t.Fatal(err)
	}
	points, err := LoadRecoveryPoints(fsys, "/data")
	if err != nil || len(points.entries) != 0 {
		t.Fatalf("a torn shared file: %+v %v, want no points and no error", points.entries, err)
	}
}

// TestCleanCloseRecordsInTheSharedFile: logs closed cleanly leave their
// final recovery points to one write of the shared file
// (Disk.FlushRecoveryPoints), and the next start sees them as cleanly
// stopped: it opens without writing a checkpoint or fsyncing a segment.
func TestCleanCloseRecordsInTheSharedFile(t *testing.T) {
	fsys := NewMemFS()
	d, err := OpenDisk(fsys, "/data", 0, quietLogger)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Disk: d, Logger: quietLogger, CheckpointInterval: time.Hour}
	var logs []*Log
	for i := range 3 {
		l := mustOpen(t, fsys, fmt.Sprintf("/data/p%d", i), cfg)
		appendDurable(t, l, 0, 4+i)
		logs = append(logs, l)
	}
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.FlushRecoveryPoints(); err != nil {
		t.Fatal(err)
	}
	points, err := LoadRecoveryPoints(fsys, "/data")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		dir := fmt.Sprintf("/data/p%d", i)
		_, gen, _, _ := readCheckpoint(fsys, dir)
		if r, ok := points.For(dir, gen); !ok || r != int64(4+i) {
			t.Fatalf("%s: shared recovery point %d (%v), want %d", dir, r, ok, 4+i)
		}
	}
	syncs := fsys.Syncs()
	d2, _ := OpenDisk(fsys, "/data", 0, quietLogger)
	for i := range 3 {
		l := mustOpen(t, fsys, fmt.Sprintf("/data/p%d", i), Config{Disk: d2, Logger: quietLogger})
		if l.DurableOffset() != int64(4+i) {
			t.Fatalf("p%d: durable %d after a clean stop, want %d", i, l.DurableOffset(), 4+i)
		}
		defer l.Close()
	}
	if n := fsys.Syncs() - syncs; n != 0 {
		t.Fatalf("a start after a clean stop made %d fsyncs, want none", n)
	}
}

// TestSharedFileKeepsThePointsOfLogsNotOpened: a flush writes every entry
// the file held, not only those of the logs opened in this run (a
// partition still loading, a topic left out of the catalog), so a crash
// then does not widen their torn-tail window.
func TestSharedFileKeepsThePointsOfLogsNotOpened(t *testing.T) {
	fsys := NewMemFS()
	d, _ := OpenDisk(fsys, "/data", 0, quietLogger)
	cfg := Config{Disk: d, Logger: quietLogger, CheckpointInterval: time.Hour}
	a, b := mustOpen(t, fsys, "/data/a", cfg), mustOpen(t, fsys, "/data/b", cfg)
	appendDurable(t, a, 0, 3)
	appendDurable(t, b, 0, 5)
	a.Close()
	b.Close()
	if err := d.FlushRecoveryPoints(); err != nil {
		t.Fatal(err)
	}
	// Next run: only a is opened and written; the flush must keep b's point.
	d2, _ := OpenDisk(fsys, "/data", 0, quietLogger)
	a = mustOpen(t, fsys, "/data/a", Config{Disk: d2, Logger: quietLogger, CheckpointInterval: time.Hour})
	appendDurable(t, a, 3, 2)
	a.Close()
	if err := d2.FlushRecoveryPoints(); err != nil {
		t.Fatal(err)
	}
	points, _ := LoadRecoveryPoints(fsys, "/data")
	_, genB, _, _ := readCheckpoint(fsys, "/data/b")
	if r, ok := points.For("/data/b", genB); !ok || r != 5 {
		t.Fatalf("b's recovery point after a run that did not open it: %d (%v), want 5", r, ok)
	}
	_, genA, _, _ := readCheckpoint(fsys, "/data/a")
	if r, ok := points.For("/data/a", genA); !ok || r != 5 {
		t.Fatalf("a's recovery point: %d (%v), want 5", r, ok)
	}
}

// A deleted topic's logs leave the shared file once their data is gone,
// whether they were written in this run or only carried over from the file
// an earlier run wrote: the file does not grow with every topic ever made.
func TestForgottenLogsLeaveTheSharedFile(t *testing.T) {
	fsys := NewMemFS()
	d, _ := OpenDisk(fsys, "/data", 0, quietLogger)
	cfg := Config{Disk: d, Logger: quietLogger, CheckpointInterval: time.Hour}
	dirs := []string{"/data/topics/t1/0", "/data/topics/t1/1", "/data/topics/t10/0", "/data/topics/t2/0"}
	for _, dir := range dirs {
		l := mustOpen(t, fsys, dir, cfg)
		appendDurable(t, l, 0, 2)
		l.Close()
	}
	if err := d.FlushRecoveryPoints(); err != nil {
		t.Fatal(err)
	}

	// This run forgets t1 (written in it); the next forgets t2, which it
	// never opened: its entry came from the file.
	d.ForgetRecoveryPoints("/data/topics/t1")
	if err := d.FlushRecoveryPoints(); err != nil {
		t.Fatal(err)
	}
	d2, _ := OpenDisk(fsys, "/data", 0, quietLogger)
	d2.ForgetRecoveryPoints("/data/topics/t2")
	if err := d2.FlushRecoveryPoints(); err != nil {
		t.Fatal(err)
	}
	points, err := LoadRecoveryPoints(fsys, "/data")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range points.entries {
		keys = append(keys, k)
	}
	if len(keys) != 1 || keys[0] != "topics/t10/0" {
		t.Fatalf("the shared file holds %v, want only topics/t10/0 (t1 and t2 forgotten, t10 is not under t1)", keys)
	}
}
