package partition

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/logstore"
)

func batch(pid int64, epoch int16, seq int32, n int) []byte {
	var recs []byte
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte("v")}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(n - 1), FirstTimestamp: 1000, MaxTimestamp: 1000,
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: int32(n), Records: recs}
	out := b.AppendTo(nil)
	b.Length = int32(len(out) - 12)
	out = b.AppendTo(nil)
	logstore.FixCRC(out)
	return out
}

func openTest(t *testing.T, fs logstore.FS) *Partition {
	t.Helper()
	p, err := Open(Config{Topic: "t", Index: 0, FS: fs, Dir: "/d/0", SnapshotPath: "/d/0.producers"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAppendValidation(t *testing.T) {
	p := openTest(t, logstore.NewMemFS())
	defer p.Close()
	b := batch(-1, -1, -1, 2)
	b[len(b)-1] ^= 1
	if _, err := p.Append(b); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("bad crc: %v", err)
	}
	ctl := batch(-1, -1, -1, 1)
	ctl[22] |= 0x20
	logstore.FixCRC(ctl)
	if _, err := p.Append(ctl); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("control batch: %v", err)
	}
	txn := batch(-1, -1, -1, 1)
	txn[22] |= 0x10
	logstore.FixCRC(txn)
	if _, err := p.Append(txn); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("transactional without producer: %v", err)
	}
	neg := batch(5, 0, -1, 1)
	if _, err := p.Append(neg); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("negative sequence: %v", err)
	}
	res, err := p.Append(batch(-1, -1, -1, 3))
	if err != nil || res.BaseOffset != 0 || res.LastOffset != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	if err := p.WaitDurable(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if p.HighWatermark() != 3 {
		t.Fatalf("hwm %d", p.HighWatermark())
	}
}

func TestWatchWakesOnDurable(t *testing.T) {
	p := openTest(t, logstore.NewMemFS())
	defer p.Close()
	ch := make(chan struct{}, 1)
	stop := p.Watch(ch)
	defer stop()
	if _, err := p.Append(batch(-1, -1, -1, 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no wakeup after an append")
	}
	if p.HighWatermark() != 1 {
		t.Fatalf("woken with hwm %d", p.HighWatermark())
	}
}

func TestSnapshotAheadOfLogIgnored(t *testing.T) {
	mem := logstore.NewMemFS()
	p := openTest(t, mem)
	if _, err := p.Append(batch(9, 0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// A snapshot claiming a longer log than exists must be ignored.
	ps := producers{}
	ps.update(9, 0, batchMeta{FirstSeq: 0, LastSeq: 50, FirstOffset: 0, LastOffset: 50}, 1)
	if err := writeFileAtomic(mem, "/d/0.producers", ps.encode(51, nil)); err != nil {
		t.Fatal(err)
	}
	p = openTest(t, mem)
	defer p.Close()
	res, err := p.Append(batch(9, 0, 0, 2))
	if err != nil || !res.Duplicate || res.BaseOffset != 0 {
		t.Fatalf("retry after a bogus snapshot: %+v %v", res, err)
	}
}

// TestSnapshotCoversOnlyDurableData: a snapshot taken while writes are in
// flight still applies after a power loss, and retries are deduplicated
// whether their batch came before or after the snapshot.
func TestSnapshotCoversOnlyDurableData(t *testing.T) {
	mem := logstore.NewMemFS()
	p := openTest(t, mem)
	defer p.Close()
	for i := range 5 {
		if _, err := p.Append(batch(3, 0, int32(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(batch(3, 0, 5, 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitDurable(context.Background(), 6); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(logstore.CrashOptions{})
	data, err := crashed.ReadFile("/d/0.producers")
	if err != nil {
		t.Fatal(err)
	}
	_, _, off, err := decodeSnapshot(data)
	if err != nil || off != 5 {
		t.Fatalf("snapshot offset %d: %v", off, err)
	}
	q := openTest(t, crashed)
	defer q.Close()
	for _, seq := range []int32{4, 5} {
		res, err := q.Append(batch(3, 0, seq, 1))
		if err != nil || !res.Duplicate || res.BaseOffset != int64(seq) {
			t.Fatalf("retry of seq %d: %+v %v", seq, res, err)
		}
	}
}

func TestRecordValidation(t *testing.T) {
	p := openTest(t, logstore.NewMemFS())
	defer p.Close()
	// Offset deltas out of order.
	var recs []byte
	for _, d := range []int32{0, 2, 1} {
		r := kmsg.Record{OffsetDelta: d, Value: []byte("v")}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: 2, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 3, Records: recs}
	out := b.AppendTo(nil)
	b.Length = int32(len(out) - 12)
	out = b.AppendTo(nil)
	logstore.FixCRC(out)
	if _, err := p.Append(out); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("bad offset deltas: %v", err)
	}
	// Trailing garbage inside the batch.
	good := batch(-1, -1, -1, 2)
	bad := append(append([]byte(nil), good...), 0, 0, 0)
	binary.BigEndian.PutUint32(bad[8:], uint32(len(bad)-12))
	logstore.FixCRC(bad)
	if _, err := p.Append(bad); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("trailing bytes: %v", err)
	}
	if _, err := p.Append(good); err != nil {
		t.Fatal(err)
	}
}

// TestAppendsDoNotWaitForASnapshotsFsync: a producer snapshot is encoded
// under the append lock but written and fsynced without it, so a partition's
// producers are not stalled for the snapshot's write, fsync, rename and
// directory fsync (it was once written under the lock, a few milliseconds
// every snapshot interval on every written partition).
func TestAppendsDoNotWaitForASnapshotsFsync(t *testing.T) {
	mem := logstore.NewMemFS()
	p := openTest(t, mem)
	defer p.Close()
	for i := range 3 {
		if _, err := p.Append(batch(3, 0, int32(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	mem.SetSyncHook(func(e logstore.SyncEvent) {
		if !e.Done && strings.HasSuffix(e.Name, ".producers.tmp") {
			once.Do(func() { close(held); <-release })
		}
	})
	snapped := make(chan error, 1)
	go func() { snapped <- p.Snapshot() }()
	select {
	case <-held:
	case err := <-snapped:
		t.Fatalf("the snapshot finished (%v) without syncing its file", err)
	}
	appended := make(chan error, 1)
	go func() {
		_, err := p.Append(batch(3, 0, 3, 1))
		appended <- err
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("an append waited for the snapshot's fsync")
	}
	close(release)
	if err := <-snapped; err != nil {
		t.Fatal(err)
	}
	mem.SetSyncHook(nil)

	// The snapshot covers the three batches before the held fsync; the state
	// changed since, so the next snapshot is due and covers the fourth.
	data, err := mem.ReadFile("/d/0.producers")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, off, err := decodeSnapshot(data); err != nil || off != 3 {
		t.Fatalf("first snapshot at %d (%v), want 3", off, err)
	}
	if err := p.Snapshot(); err != nil {
		t.Fatal(err)
	}
	data, _ = mem.ReadFile("/d/0.producers")
	if _, _, off, err := decodeSnapshot(data); err != nil || off != 4 {
		t.Fatalf("second snapshot at %d (%v), want 4", off, err)
	}
}

// TestPeriodicSnapshotWaitsForEnoughWritesOrAge: the maintenance snapshot
// is written for a partition with enough new bytes, or whose last snapshot
// is old enough, and not for one that took a few records a moment ago, so
// that ten thousand quiet partitions are not ten thousand snapshot writes
// every tick.
func TestPeriodicSnapshotWaitsForEnoughWritesOrAge(t *testing.T) {
	mem := logstore.NewMemFS()
	var nowNanos atomic.Int64 // the log's syncer reads the clock too
	nowNanos.Store(time.Unix(1_700_000_000, 0).UnixNano())
	clock := func() time.Time { return time.Unix(0, nowNanos.Load()) }
	p, err := Open(Config{Topic: "t", FS: mem, Dir: "/d/0", SnapshotPath: "/d/0.producers", Now: clock,
		Log: logstore.Config{Now: clock}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	written := func() bool {
		_, err := mem.Stat("/d/0.producers")
		return err == nil
	}
	if _, err := p.Append(batch(3, 0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	if err := p.SnapshotIfDue(1<<20, time.Minute); err != nil || written() {
		t.Fatalf("a few bytes, a fresh partition: snapshot written %v (err %v), want none", written(), err)
	}
	if err := p.SnapshotIfDue(10, time.Minute); err != nil || !written() {
		t.Fatalf("more than minBytes appended: snapshot written %v (err %v), want one", written(), err)
	}
	if err := mem.Remove("/d/0.producers"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(batch(3, 0, 2, 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.SnapshotIfDue(1<<20, time.Minute); err != nil || written() {
		t.Fatalf("a record just after a snapshot: snapshot written %v (err %v), want none", written(), err)
	}
	nowNanos.Add(int64(time.Minute))
	if err := p.SnapshotIfDue(1<<20, time.Minute); err != nil || !written() {
		t.Fatalf("the last snapshot a minute old: snapshot written %v (err %v), want one", written(), err)
	}
}
