package logstore

import (
	"errors"
	"strings"
	"testing"
)

// TestFullDisk: a full disk refuses records without harming the log or
// leaving debris, metadata writes draw on the reserve, markers get through,
// a restart on the full disk works, and writes resume once space returns.
func TestFullDisk(t *testing.T) {
	mem := NewMemFS()
	mem.MkdirAll("/data")
	disk, err := OpenDisk(mem, "/data", 1<<20, quietLogger)
	if err != nil {
		t.Fatal(err)
	}
	disk.Maintain()
	if st := disk.Status(); st.ReserveBytes != 1<<20 {
		t.Fatalf("reserve not allocated: %+v", st)
	}
	cfg := Config{Logger: quietLogger, Disk: disk, SegmentBytes: 64 << 10}
	l := mustOpen(t, mem, "/data/p", cfg)
	// Leave room for ~40 batches of 1 KiB beyond what exists.
	used := mem.UsedBytes()
	mem.SetCapacity(used + 40<<10)
	payload := make([]byte, 1000)
	var acked int
	for _, size := range []int{1000, 1} { // once full, even small records wait
		for {
			if _, err := l.AppendDurable(t.Context(), testBatch(1, 1, payload[:size])); err != nil {
				if !errors.Is(err, ErrNoSpace) {
					t.Fatalf("append on a full disk: %v, want ErrNoSpace", err)
				}
				break
			}
			acked++
		}
	}
	if acked == 0 || l.Err() != nil {
		t.Fatalf("acked %d, log error %v", acked, l.Err())
	}
	if !disk.Status().Full {
		t.Fatal("disk not reported full")
	}
	// Not one byte free: a transaction marker gets through on the reserve.
	mem.SetCapacity(mem.UsedBytes())
	if _, err := l.AppendUsingReserve(testBatch(1, 1, []byte("marker"))); err != nil {
		t.Fatalf("marker on a full disk: %v", err)
	}
	if disk.Status().ReserveBytes >= 1<<20 {
		t.Fatal("the reserve was not drawn on")
	}
	if err := l.Close(); err != nil {
		t.Fatalf("close on a full disk: %v", err)
	}
	// A restart on the full disk works and serves everything acknowledged.
	l = mustOpen(t, mem, "/data/p", cfg)
	got, _, err := collect(l)
	if err != nil || len(got) != acked+1 {
		t.Fatalf("after restart on a full disk: %d batches (want %d), err %v", len(got), acked+1, err)
	}
	names, _ := mem.ReadDir("/data/p")
	for _, n := range names {
		if strings.HasSuffix(n, ".tmp") {
			t.Fatalf("leftover %s after ENOSPC", n)
		}
	}
	// Space returns: appends resume and the reserve grows back.
	mem.SetCapacity(0)
	mustAppendDurable(t, l, testBatch(1, 1, payload))
	if disk.Status().Full {
		t.Fatal("disk still reported full after a successful write")
	}
	disk.Maintain()
	if st := disk.Status(); st.ReserveBytes != 1<<20 {
		t.Fatalf("reserve not refilled: %+v", st)
	}
	l.Close()
}
