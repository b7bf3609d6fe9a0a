package logstore

import (
	"sync/atomic"
	"testing"
	"time"
)

// Every log that shares a Disk reports its group-commit fsyncs to the
// observer: together they cover exactly the bytes made durable.
func TestSyncObserverSeesEveryLog(t *testing.T) {
	mem := NewMemFS()
	mem.MkdirAll("/data")
	disk, err := OpenDisk(mem, "/data", 0, quietLogger)
	if err != nil {
		t.Fatal(err)
	}
	var syncs, bytes atomic.Int64
	var took atomic.Int64
	disk.ObserveSyncs(func(d time.Duration, n int64) {
		syncs.Add(1)
		bytes.Add(n)
		took.Add(int64(d))
	})
	cfg := Config{Logger: quietLogger, Disk: disk, SegmentBytes: 4 << 10}
	a := mustOpen(t, mem, "/data/a", cfg)
	defer a.Close()
	b := mustOpen(t, mem, "/data/b", cfg)
	defer b.Close()
	var written int64
	for i := range 20 { // several segments each
		batch := testBatch(1, int64(i), make([]byte, 700))
		written += 2 * int64(len(batch))
		mustAppendDurable(t, a, batch)
		mustAppendDurable(t, b, testBatch(1, int64(i), make([]byte, 700)))
	}
	if got := bytes.Load(); got != written {
		t.Fatalf("observed fsyncs covered %d bytes, want %d", got, written)
	}
	if n := syncs.Load(); n < 2 || n > 40 {
		t.Fatalf("%d fsyncs observed for 40 durable appends", n)
	}

	// Turned off, nothing more is reported.
	disk.ObserveSyncs(nil)
	before := syncs.Load()
	mustAppendDurable(t, a, testBatch(1, 99, []byte("x")))
	if syncs.Load() != before {
		t.Fatal("an fsync was reported after ObserveSyncs(nil)")
	}
}

// An append nobody waits for is fsynced after BackgroundSyncDelay, to
// gather more bytes per fsync; AppendSyncNow, for a caller about to wait
// (acks=all), starts the fsync at once, before anyone calls WaitDurable.
func TestAppendSyncNowStartsTheFsyncWithoutWaitingForTheDelay(t *testing.T) {
	l := mustOpen(t, NewMemFS(), "/p", Config{BackgroundSyncDelay: time.Hour})
	defer l.Close()
	mustAppend(t, l, testBatch(1, 1, []byte("background")))
	time.Sleep(50 * time.Millisecond)
	if got := l.DurableOffset(); got != 0 {
		t.Fatalf("a plain append was fsynced (durable offset %d) before BackgroundSyncDelay", got)
	}
	if _, err := l.AppendSyncNow(testBatch(1, 1, []byte("acks=all"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.DurableOffset() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("durable offset %d: AppendSyncNow did not start an fsync", l.DurableOffset())
		}
		time.Sleep(time.Millisecond)
	}
}
