package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/testkit"
)

func TestAppendAssignsOffsetsAndReadsBack(t *testing.T) {
	l := mustOpen(t, NewMemFS(), "/p", Config{})
	defer l.Close()
	a := mustAppendDurable(t, l, testBatch(3, 100, []byte("first")))
	b := mustAppendDurable(t, l, testBatch(2, 200, []byte("second")))
	if a.BaseOffset != 0 || a.LastOffset != 2 || b.BaseOffset != 3 || b.LastOffset != 4 {
		t.Fatalf("offsets: got %+v and %+v, want 0..2 and 3..4", a, b)
	}
	if got := l.EndOffset(); got != 5 {
		t.Fatalf("EndOffset = %d, want 5", got)
	}
	if got := l.DurableOffset(); got != 5 {
		t.Fatalf("DurableOffset = %d, want 5 after durable appends", got)
	}
	// A read from an offset inside the first batch starts with that batch.
	out, err := l.Read(1, 1<<20, l.DurableOffset())
	if err != nil {
		t.Fatal(err)
	}
	hs := splitBatches(t, out)
	if len(hs) != 2 || hs[0].BaseOffset != 0 || hs[1].BaseOffset != 3 {
		t.Fatalf("read from 1: got %+v", hs)
	}
	if out, _ := l.Read(5, 1<<20, 5); len(out) != 0 {
		t.Fatalf("read at the end returned %d bytes", len(out))
	}
	if _, err := l.Read(6, 1<<20, 6); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past the end: err = %v, want ErrOffsetOutOfRange", err)
	}
}

func TestAppendRejectsInvalidBatches(t *testing.T) {
	l := mustOpen(t, NewMemFS(), "/p", Config{})
	defer l.Close()
	good := testBatch(1, 1, []byte("x"))
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	badMagic := bytes.Clone(good)
	badMagic[16] = 1
	for name, b := range map[string][]byte{
		"short":          good[:30],
		"crc mismatch":   badCRC,
		"magic 1":        badMagic,
		"trailing bytes": append(bytes.Clone(good), 0),
		"truncated":      good[:len(good)-1],
	} {
		if _, err := l.Append(b); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: err = %v, want ErrInvalidBatch", name, err)
		}
	}
	if l.EndOffset() != 0 {
		t.Fatalf("invalid batches moved the end offset to %d", l.EndOffset())
	}
}

func TestReadHonoursByteLimitAndBound(t *testing.T) {
	l := mustOpen(t, NewMemFS(), "/p", Config{SegmentBytes: 300})
	defer l.Close()
	for i := range 10 {
		mustAppendDurable(t, l, testBatch(1, int64(i), bytes.Repeat([]byte{'a' + byte(i)}, 40)))
	}
	size := BatchHeaderSize + 40
	// At least one batch even when it is larger than the limit.
	out, err := l.Read(0, 1, 10)
	if err != nil || len(splitBatches(t, out)) != 1 {
		t.Fatalf("read with a 1-byte limit: %d batches, err %v; want exactly one", len(splitBatches(t, out)), err)
	}
	// The limit cuts at whole batches, across segments.
	out, _ = l.Read(0, 3*size+size/2, 10)
	if n := len(splitBatches(t, out)); n != 3 {
		t.Fatalf("read with a 3.5-batch limit returned %d batches, want 3", n)
	}
	// maxOffset is exclusive: nothing at or beyond it is served.
	out, _ = l.Read(2, 1<<20, 7)
	hs := splitBatches(t, out)
	if len(hs) != 5 || hs[0].BaseOffset != 2 || hs[4].BaseOffset != 6 {
		t.Fatalf("read 2..7 got %d batches starting %v", len(hs), hs)
	}
}

func TestReopenKeepsEverythingAfterCleanClose(t *testing.T) {
	fsys := NewMemFS()
	clock := testkit.NewClock(time.UnixMilli(1_000_000))
	cfg := Config{SegmentBytes: 500, Now: clock.Now}
	l := mustOpen(t, fsys, "/p", cfg)
	want := map[int64]string{}
	for i := range 30 {
		p := fmt.Sprintf("batch-%02d", i)
		info := mustAppend(t, l, testBatch(2, int64(i), []byte(p)))
		want[info.BaseOffset] = p
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, fsys, "/p", cfg)
	defer l.Close()
	got, _, err := collect(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("reopened log has %d batches, want %d", len(got), len(want))
	}
	for off, p := range want {
		if got[off] != p {
			t.Fatalf("offset %d: got %q, want %q", off, got[off], p)
		}
	}
	if l.EndOffset() != 60 || l.DurableOffset() != 60 {
		t.Fatalf("end %d durable %d, want 60", l.EndOffset(), l.DurableOffset())
	}
	if n := len(l.segs); n < 3 {
		t.Fatalf("expected several segments with 500-byte segments, got %d", n)
	}
}

func TestRollByTimeAndRetention(t *testing.T) {
	fsys := NewMemFS()
	clock := testkit.NewClock(time.UnixMilli(10_000_000))
	cfg := Config{RollInterval: time.Hour, RetentionTime: 3 * time.Hour, Now: clock.Now}
	l := mustOpen(t, fsys, "/p", cfg)
	defer l.Close()
	for i := range 5 {
		mustAppendDurable(t, l, testBatch(1, clock.Now().UnixMilli(), []byte{byte(i)}))
		clock.Advance(61 * time.Minute)
	}
	if n := len(l.segs); n != 5 {
		t.Fatalf("hourly rolls over 5 hours made %d segments, want 5", n)
	}
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	// Now is 5h05m after the first batch: batches older than 3h go, i.e.
	// those written at +0h and +1h01m; the one at +2h02m (3h03m old) too.
	if got := l.StartOffset(); got != 3 {
		t.Fatalf("log start after time retention = %d, want 3", got)
	}
	if _, err := l.Read(0, 100, 10); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("reading deleted offset 0: %v", err)
	}
	names, _ := fsys.ReadDir("/p")
	for _, n := range names {
		if n == segmentName(0) || n == segmentName(1) {
			t.Fatalf("segment %s still on disk after retention: %v", n, names)
		}
	}
}

func TestRetentionByBytesKeepsActiveSegment(t *testing.T) {
	l := mustOpen(t, NewMemFS(), "/p", Config{SegmentBytes: 200, RetentionBytes: 400, RetentionTime: -1})
	defer l.Close()
	for range 20 {
		mustAppend(t, l, testBatch(1, 1, bytes.Repeat([]byte{'x'}, 100)))
	}
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, s := range l.segs {
		total += s.size
	}
	// As in Kafka, a segment goes only if the log stays at or above the
	// limit without it, so the log exceeds the limit by less than one segment.
	if total < 400 || total-l.segs[0].size >= 400 {
		t.Fatalf("after byte retention: %d bytes in %d segments (oldest %d bytes), limit 400", total, len(l.segs), l.segs[0].size)
	}
	if l.EndOffset() != 20 {
		t.Fatalf("retention changed the end offset to %d", l.EndOffset())
	}
}

func TestTruncateAndDeleteBeforeSurviveReopen(t *testing.T) {
	fsys := NewMemFS()
	cfg := Config{SegmentBytes: 300}
	l := mustOpen(t, fsys, "/p", cfg)
	for i := range 12 {
		mustAppend(t, l, testBatch(2, int64(i), []byte(fmt.Sprintf("b%02d", i))))
	}
	// Offset 9 is inside the batch 8..9, which goes whole.
	if err := l.Truncate(9); err != nil {
		t.Fatal(err)
	}
	if l.EndOffset() != 8 {
		t.Fatalf("end after Truncate(9) = %d, want 8", l.EndOffset())
	}
	if err := l.DeleteBefore(4); err != nil {
		t.Fatal(err)
	}
	mustAppendDurable(t, l, testBatch(1, 99, []byte("after")))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, fsys, "/p", cfg)
	defer l.Close()
	got, order, err := collect(l)
	if err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() != 4 || l.EndOffset() != 9 {
		t.Fatalf("start %d end %d, want 4 and 9", l.StartOffset(), l.EndOffset())
	}
	if order[0] != 4 || got[8] != "after" || got[6] != "b03" {
		t.Fatalf("unexpected contents %v (order %v)", got, order)
	}
}

func TestOffsetForTime(t *testing.T) {
	l := mustOpen(t, NewMemFS(), "/p", Config{SegmentBytes: 250, IndexIntervalBytes: 64})
	defer l.Close()
	// Timestamps rise by 10 per batch, with one out-of-order batch.
	ts := []int64{10, 20, 30, 25, 40, 50, 60, 70}
	for _, v := range ts {
		mustAppend(t, l, testBatch(1, v, []byte("t")))
	}
	for _, c := range []struct {
		ts   int64
		want int64
		ok   bool
	}{{0, 0, true}, {10, 0, true}, {11, 1, true}, {26, 2, true}, {31, 4, true}, {70, 7, true}, {71, 0, false}} {
		got, ok, err := l.OffsetForTime(c.ts)
		if err != nil || ok != c.ok || (ok && got != c.want) {
			t.Errorf("OffsetForTime(%d) = %d, %v, %v; want %d, %v", c.ts, got, ok, err, c.want, c.ok)
		}
	}
	if ts, off, ok, err := l.MaxTimestamp(); err != nil || !ok || ts != 70 || off != 7 {
		t.Errorf("MaxTimestamp = %d at %d (%v, %v), want 70 at 7", ts, off, ok, err)
	}
}

// TestGroupCommitSharesFsyncs is the point of the syncer: many concurrent
// durable appenders must cost far fewer fsyncs than appends.
func TestGroupCommitSharesFsyncs(t *testing.T) {
	fsys := NewMemFS()
	l := mustOpen(t, fsys, "/p", Config{})
	defer l.Close()
	// Make each fsync take a while, as on a real disk, so appends pile up.
	fsys.SetSyncHook(func(ev SyncEvent) {
		if !ev.Done {
			time.Sleep(2 * time.Millisecond)
		}
	})
	before := fsys.Syncs()
	const appenders, each = 32, 20
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				mustAppendDurable(t, l, testBatch(1, 1, []byte(fmt.Sprintf("%d-%d", g, i))))
			}
		}()
	}
	wg.Wait()
	syncs := fsys.Syncs() - before
	if syncs*4 > appenders*each {
		t.Fatalf("%d durable appends took %d fsyncs; group commit should share them", appenders*each, syncs)
	}
	t.Logf("%d durable appends, %d fsyncs", appenders*each, syncs)
}

func TestFailedFsyncPoisonsTheLog(t *testing.T) {
	fsys := NewMemFS()
	l := mustOpen(t, fsys, "/p", Config{})
	defer l.Close()
	mustAppendDurable(t, l, testBatch(1, 1, []byte("ok")))
	fsys.SetSyncError(errors.New("EIO"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.AppendDurable(ctx, testBatch(1, 1, []byte("lost?"))); !errors.Is(err, ErrPoisoned) {
		t.Fatalf("durable append with failing fsync: err = %v, want ErrPoisoned", err)
	}
	// A later fsync would "succeed" (fsyncgate); the log must not believe it.
	fsys.SetSyncError(nil)
	if _, err := l.Append(testBatch(1, 1, []byte("later"))); !errors.Is(err, ErrPoisoned) {
		t.Fatalf("append after a failed fsync: err = %v, want ErrPoisoned", err)
	}
	if l.DurableOffset() != 1 {
		t.Fatalf("durable offset moved to %d past a failed fsync", l.DurableOffset())
	}
	if !errors.Is(l.Err(), ErrPoisoned) {
		t.Fatalf("Err() = %v", l.Err())
	}
}

func TestDamagedIndexIsRebuilt(t *testing.T) {
	fsys := NewMemFS()
	cfg := Config{SegmentBytes: 200, IndexIntervalBytes: 1}
	l := mustOpen(t, fsys, "/p", cfg)
	for i := range 10 {
		mustAppend(t, l, testBatch(1, int64(i), bytes.Repeat([]byte{'i'}, 50)))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	idx := "/p/" + indexName(0)
	b, err := fsys.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0xff
	if err := fsys.WriteFile(idx, b); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remove("/p/" + indexName(2)); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, fsys, "/p", cfg)
	defer l.Close()
	for off := int64(0); off < 10; off++ {
		out, err := l.Read(off, 1, 10)
		if err != nil {
			t.Fatal(err)
		}
		if hs := splitBatches(t, out); len(hs) != 1 || hs[0].BaseOffset != off {
			t.Fatalf("read %d after index rebuild: %+v", off, hs)
		}
	}
	if nb, err := fsys.ReadFile(idx); err != nil || bytes.Equal(nb, b) {
		t.Fatalf("damaged index was not rewritten (err %v)", err)
	}
}
