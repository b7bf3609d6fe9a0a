package logstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFullDisk: a full disk refuses records without harming the log or
// leaving debris, metadata writes draw on the reserve, markers get through,
// a restart on the full disk works, and writes resume once space returns.
func TestFullDisk(t *testing.T) {
	mem, disk := diskWithReserve(t)
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

// TestAStartOnAFullDiskIsFullAtOnce: a broker restarted on a disk that is
// still full (its reserve drawn on and not restorable) reports the disk full
// and refuses records from its first moment, not only after a write fails;
// it clears once the space the reserve needs, and a chunk, is free.
func TestAStartOnAFullDiskIsFullAtOnce(t *testing.T) {
	mem, disk := diskWithReserve(t)
	// The reserve was drawn on (a metadata write on the full disk), then
	// the process stopped; not a byte is free.
	disk.mu.Lock()
	disk.shrinkLocked(512 << 10)
	disk.mu.Unlock()
	mem.SetCapacity(mem.UsedBytes())

	restarted, err := OpenDisk(mem, "/data", 1<<20, quietLogger)
	if err != nil {
		t.Fatal(err)
	}
	if restarted.Status().Full {
		t.Fatal("full before Maintain looked at the disk")
	}
	restarted.Maintain()
	if !restarted.Status().Full || !restarted.RefusesRecords() {
		t.Fatalf("a start on a full disk: %+v, want full and records refused", restarted.Status())
	}
	if n := restarted.Status().NoSpaceErrors; n != 0 {
		t.Fatalf("%d ENOSPC errors counted, but no write failed", n)
	}
	mem.SetCapacity(0) // space returns
	restarted.Maintain()
	if st := restarted.Status(); st.Full || st.ReserveBytes != 1<<20 {
		t.Fatalf("after space returned: %+v, want not full and the reserve whole", st)
	}
}

// TestADiskAtTheEdgeIsNotLoggedOnEveryFlap: with a little space free and
// producers retrying batches larger than it, the disk goes full and clear
// many times a second; the state follows (records are refused only while
// full) but the full and clear lines are written at most once per
// diskLogEvery. Before, a run logged 618 ERROR lines in 20 s.
func TestADiskAtTheEdgeIsNotLoggedOnEveryFlap(t *testing.T) {
	mem := NewMemFS()
	mem.MkdirAll("/data")
	var lines logLines
	disk, err := OpenDisk(mem, "/data", 0, slog.New(&lines))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	disk.now = func() time.Time { return now }
	mem.SetCapacity(mem.UsedBytes() + 1<<20) // 1 MiB free: more than a chunk
	enospc := fmt.Errorf("write: %w", syscall.ENOSPC)
	for i := range 100 {
		disk.Observe(enospc) // a batch larger than what is free
		if !disk.Status().Full {
			t.Fatalf("flap %d: the disk is not full after ENOSPC", i)
		}
		if disk.RefusesRecords() { // 1 MiB free covers a chunk: clears
			t.Fatalf("flap %d: records still refused with space free", i)
		}
		now = now.Add(100 * time.Millisecond)
	}
	if full, clear := lines.count(slog.LevelError), lines.count(slog.LevelInfo); full != 1 || clear != 1 {
		t.Fatalf("100 flaps in 10 s logged %d full and %d clear lines, want 1 and 1", full, clear)
	}
	now = now.Add(diskLogEvery)
	disk.Observe(enospc)
	if got := lines.count(slog.LevelError); got != 2 {
		t.Fatalf("a full disk %v later logged %d full lines in all, want 2", diskLogEvery, got)
	}
	if last := lines.last(); !strings.Contains(last, "unlogged_since_last=99") {
		t.Fatalf("the next line does not count the unlogged flaps: %s", last)
	}
}

// logLines is a slog.Handler that keeps what was logged.
type logLines struct {
	mu    sync.Mutex
	recs  []slog.Record
	attrs []string
}

func (h *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (h *logLines) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logLines) WithGroup(string) slog.Handler            { return h }
func (h *logLines) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	h.recs = append(h.recs, r)
	h.attrs = append(h.attrs, b.String())
	return nil
}

func (h *logLines) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Level == level {
			n++
		}
	}
	return n
}

func (h *logLines) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attrs[len(h.attrs)-1]
}

// diskWithReserve is a MemFS data directory /data with a Disk whose 1 MiB
// reserve has been created.
func diskWithReserve(t *testing.T) (*MemFS, *Disk) {
	t.Helper()
	mem := NewMemFS()
	mem.MkdirAll("/data")
	disk, err := OpenDisk(mem, "/data", 1<<20, quietLogger)
	if err != nil {
		t.Fatal(err)
	}
	disk.Maintain()
	return mem, disk
}
