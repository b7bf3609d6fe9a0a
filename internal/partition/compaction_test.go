package partition

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/logstore"
)

// keyedBatch builds an uncompressed batch of records (value nil: a
// tombstone) for producer pid (-1: none).
func keyedBatch(pid int64, epoch int16, seq int32, txn bool, ts int64, keys []string, values []*string) []byte {
	var recs []byte
	for i, k := range keys {
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte(k)}
		if values[i] != nil {
			r.Value = []byte(*values[i])
		}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	attrs := int16(0)
	if txn {
		attrs |= 0x10
	}
	b := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, Attributes: attrs, LastOffsetDelta: int32(len(keys) - 1), FirstTimestamp: ts, MaxTimestamp: ts,
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: int32(len(keys)), Records: recs}
	out := b.AppendTo(nil)
	b.Length = int32(len(out) - 12)
	out = b.AppendTo(nil)
	logstore.FixCRC(out)
	return out
}

// modelRecord is what the test produced at one offset.
type modelRecord struct {
	key, value string
	tombstone  bool
	status     int // plainRec, openRec, committedRec, abortedRec
	pid        int64
}

const (
	plainRec = iota
	openRec
	committedRec
	abortedRec
)

// compactionModel drives a compacted partition through random produce,
// transaction, clean, crash and restart steps and checks it against what
// it wrote.
type compactionModel struct {
	t       *testing.T
	rng     *rand.Rand
	fsys    *logstore.MemFS
	now     time.Time
	nowMu   sync.Mutex
	p       *Partition
	cleaner *logstore.Cleaner
	cfg     CleanConfig

	produced map[int64]modelRecord
	seqs     map[int64]int32  // idempotent producer → next sequence
	lastReq  map[int64][]byte // idempotent producer → its last batch, for retries
	lastOff  map[int64]int64  // … and the base offset it got
	open     map[int64][]int64
	steps    map[string]int
}

func (m *compactionModel) clock() time.Time {
	m.nowMu.Lock()
	defer m.nowMu.Unlock()
	return m.now
}

func (m *compactionModel) openPartition() {
	p, err := Open(Config{Topic: "t", Index: 0, FS: m.fsys, Dir: "/d/0", SnapshotPath: "/d/0.producers", Now: m.clock,
		Log: logstore.Config{SegmentBytes: 400, IndexIntervalBytes: 128, CheckpointInterval: time.Hour}})
	if err != nil {
		m.t.Fatalf("open: %v", err)
	}
	m.p = p
}

func (m *compactionModel) append(b []byte, status int, pid int64, keys []string, values []*string) AppendResult {
	res, err := m.p.Append(b)
	if err != nil {
		m.t.Fatalf("append: %v", err)
	}
	if err := m.p.WaitDurable(context.Background(), res.LastOffset+1); err != nil {
		m.t.Fatal(err)
	}
	for i, k := range keys {
		r := modelRecord{key: k, status: status, pid: pid, tombstone: values[i] == nil}
		if values[i] != nil {
			r.value = *values[i]
		}
		m.produced[res.BaseOffset+int64(i)] = r
	}
	return res
}

func (m *compactionModel) randomRecords() ([]string, []*string) {
	var keys []string
	var values []*string
	for range 1 + m.rng.IntN(3) {
		keys = append(keys, "k"+strconv.Itoa(m.rng.IntN(12)))
		if m.rng.IntN(6) == 0 {
			values = append(values, nil)
		} else {
			v := "v" + strconv.Itoa(m.rng.IntN(1e6))
			values = append(values, &v)
		}
	}
	return keys, values
}

func (m *compactionModel) step() {
	switch r := m.rng.IntN(100); {
	case r < 40:
		m.steps["produce"]++
		keys, values := m.randomRecords()
		pid := int64(-1)
		epoch, seq := int16(-1), int32(-1)
		if m.rng.IntN(2) == 0 {
			pid, epoch = int64(1+m.rng.IntN(3)), 0
			if _, busy := m.open[pid]; busy {
				pid, epoch = -1, -1
			} else {
				seq = m.seqs[pid]
			}
		}
		b := keyedBatch(pid, epoch, seq, false, m.clock().UnixMilli(), keys, values)
		res := m.append(b, plainRec, pid, keys, values)
		if pid >= 0 {
			m.seqs[pid] += int32(len(keys))
			m.lastReq[pid], m.lastOff[pid] = b, res.BaseOffset
		}
	case r < 55:
		m.steps["transaction"]++
		pid := int64(1 + m.rng.IntN(3))
		for range 1 + m.rng.IntN(2) {
			keys, values := m.randomRecords()
			b := keyedBatch(pid, 0, m.seqs[pid], true, m.clock().UnixMilli(), keys, values)
			res := m.append(b, openRec, pid, keys, values)
			m.seqs[pid] += int32(len(keys))
			m.lastReq[pid], m.lastOff[pid] = b, res.BaseOffset
			for i := range keys {
				m.open[pid] = append(m.open[pid], res.BaseOffset+int64(i))
			}
		}
		if m.rng.IntN(4) > 0 {
			m.endTxn(pid, m.rng.IntN(3) > 0)
		}
	case r < 62:
		for pid := range m.open {
			m.endTxn(pid, m.rng.IntN(2) == 0)
			break
		}
	case r < 77:
		m.clean()
	case r < 84:
		m.steps["time"]++
		m.nowMu.Lock()
		m.now = m.now.Add(time.Duration(m.rng.Int64N(int64(2 * m.cfg.DeleteRetention))))
		m.nowMu.Unlock()
	case r < 90:
		m.steps["restart"]++
		if err := m.p.Close(); err != nil {
			m.t.Fatal(err)
		}
		m.maybeLoseSnapshot()
		m.openPartition()
		m.check(-1)
	case r < 95:
		m.steps["power loss"]++
		img := m.fsys.CrashClone(logstore.CrashOptions{Rand: m.rng, TornTail: 0.3})
		m.p.Close()
		m.fsys = img
		m.maybeLoseSnapshot()
		m.openPartition()
		m.check(-1)
	default:
		// A retry of an idempotent producer's last batch is a duplicate,
		// even after compaction and restarts.
		for pid, b := range m.lastReq {
			m.steps["retry"]++
			res, err := m.p.Append(slices.Clone(b))
			if err != nil || !res.Duplicate || res.BaseOffset != m.lastOff[pid] {
				m.t.Fatalf("retry of producer %d's last batch: %+v, %v (want a duplicate at %d)", pid, res, err, m.lastOff[pid])
			}
			break
		}
	}
}

// maybeLoseSnapshot deletes the producer snapshot, so the next open
// rebuilds producer state from the (compacted) log alone.
func (m *compactionModel) maybeLoseSnapshot() {
	if m.rng.IntN(2) == 0 {
		m.fsys.Remove("/d/0.producers")
	}
}

func (m *compactionModel) endTxn(pid int64, commit bool) {
	if _, err := m.p.WriteMarker(context.Background(), pid, 0, commit, 0); err != nil {
		m.t.Fatal(err)
	}
	status := abortedRec
	if commit {
		status = committedRec
	}
	for _, off := range m.open[pid] {
		r := m.produced[off]
		r.status = status
		m.produced[off] = r
	}
	delete(m.open, pid)
}

// clean runs a round, sometimes taking a power-loss image at a random sync
// point in the middle and continuing from it.
func (m *compactionModel) clean() {
	m.steps["clean"]++
	// Sometimes snapshot producer state first, as the broker always does:
	// a clean reaches only what the snapshot covers, and a snapshot older
	// than what a clean removed must never be trusted.
	if m.rng.IntN(8) == 0 {
		if err := m.p.Snapshot(); err != nil {
			m.t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var img *logstore.MemFS
	if m.rng.IntN(3) == 0 {
		at, n := 1+m.rng.IntN(30), 0
		cloneRand := rand.New(rand.NewPCG(m.rng.Uint64(), 1))
		m.fsys.SetSyncHook(func(logstore.SyncEvent) {
			mu.Lock()
			defer mu.Unlock()
			if n++; n == at {
				img = m.fsys.CrashClone(logstore.CrashOptions{Rand: cloneRand, TornTail: 0.3})
			}
		})
	}
	stats, err := m.p.Clean(context.Background(), m.cleaner, m.cfg)
	m.fsys.SetSyncHook(nil)
	if err != nil {
		m.t.Fatalf("clean: %v", err)
	}
	if img != nil {
		m.steps["crash mid-clean"]++
		m.p.Close()
		m.fsys = img
		m.openPartition()
		m.check(-1)
		return
	}
	m.check(stats.CleanedTo)
}

// check compares the partition with the model: every record served is one
// produced at that offset; per key, the last record that is neither
// aborted nor in an open transaction is the model's (or, for a tombstone,
// may be gone with every older record of the key); below cleanedTo
// (a clean that finished) a key has at most one record and no aborted
// record remains; and every idempotent producer's sequence survived.
func (m *compactionModel) check(cleanedTo int64) {
	t := m.t
	served := map[int64]modelRecord{}
	hwm := m.p.HighWatermark()
	for off := m.p.StartOffset(); off < hwm; {
		data, err := m.p.Read(off, 1<<20)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if len(data) == 0 {
			t.Fatalf("nothing read at %d below the high watermark %d", off, hwm)
		}
		for len(data) > 0 {
			var b kmsg.RecordBatch
			if err := b.ReadFrom(data); err != nil {
				t.Fatal(err)
			}
			n := int(b.Length) + 12
			if b.PartitionLeaderEpoch != 0 {
				t.Fatalf("batch at %d served with leader epoch %d", b.FirstOffset, b.PartitionLeaderEpoch)
			}
			if b.Attributes&0x20 == 0 {
				raw := b.Records
				for range b.NumRecords {
					var r kmsg.Record
					l, w := binaryVarint(raw)
					if err := r.ReadFrom(raw[:w+int(l)]); err != nil {
						t.Fatal(err)
					}
					raw = raw[w+int(l):]
					served[b.FirstOffset+int64(r.OffsetDelta)] = modelRecord{key: string(r.Key), value: string(r.Value), tombstone: r.Value == nil}
				}
			}
			off = b.FirstOffset + int64(b.LastOffsetDelta) + 1
			data = data[n:]
		}
	}
	latest := map[string]int64{}
	for off, r := range m.produced {
		if (r.status == plainRec || r.status == committedRec) && off >= m.p.StartOffset() {
			if cur, ok := latest[r.key]; !ok || off > cur {
				latest[r.key] = off
			}
		}
	}
	servedLatest := map[string]int64{}
	perKeyBelow := map[string]int{}
	for off, s := range served {
		want, ok := m.produced[off]
		if !ok || want.key != s.key || want.value != s.value || want.tombstone != s.tombstone {
			t.Fatalf("offset %d serves %+v, produced %+v (%v)", off, s, want, ok)
		}
		if off < cleanedTo {
			if want.status == abortedRec {
				t.Fatalf("aborted record at %d survived a clean to %d", off, cleanedTo)
			}
			perKeyBelow[s.key]++
		}
		if want.status == plainRec || want.status == committedRec {
			if cur, ok := servedLatest[s.key]; !ok || off > cur {
				servedLatest[s.key] = off
			}
		}
	}
	for k, off := range latest {
		got, ok := servedLatest[k]
		switch {
		case ok && got == off:
		case !ok && m.produced[off].tombstone:
		default:
			t.Fatalf("key %s: last record served at %d (%v), the model's is at %d (%+v)", k, got, ok, off, m.produced[off])
		}
	}
	for k, n := range perKeyBelow {
		if n > 1 {
			var offs []string
			for off, s := range served {
				if s.key == k {
					offs = append(offs, fmt.Sprintf("%d:%+v", off, m.produced[off]))
				}
			}
			t.Fatalf("key %s has %d records below %d after a finished clean: %v", k, n, cleanedTo, offs)
		}
	}
	states := map[int64]ProducerState{}
	for _, st := range m.p.ProducerStates() {
		states[st.ProducerID] = st
	}
	for pid, next := range m.seqs {
		if st, ok := states[pid]; !ok || st.LastSequence != next-1 {
			t.Fatalf("producer %d: state %+v after recovery, last sequence should be %d", pid, st, next-1)
		}
	}
}

func binaryVarint(b []byte) (int64, int) {
	var x uint64
	var s uint
	for i, c := range b {
		if c < 0x80 {
			x |= uint64(c) << s
			return int64(x>>1) ^ -int64(x&1), i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

// TestCompactedPartitionMatchesItsModel is the long randomized test of
// compaction: produce (plain and idempotent), transactions committed and
// aborted, cleans (some with a power loss in the middle), time passing
// delete horizons, restarts and power losses with and without the producer
// snapshot, and idempotent retries; after every clean and every recovery
// the partition is compared with what was written. IDEM_COMPACTION_LONG=1
// runs it at length.
func TestCompactedPartitionMatchesItsModel(t *testing.T) {
	seeds, steps := 4, 300
	if testing.Short() {
		seeds, steps = 2, 200
	}
	if os.Getenv("IDEM_COMPACTION_LONG") != "" {
		seeds, steps = 40, 3000
	}
	total := map[string]int{}
	for seed := range uint64(seeds) {
		m := &compactionModel{
			t: t, rng: rand.New(rand.NewPCG(seed, 0xc0)), fsys: logstore.NewMemFS(), now: time.UnixMilli(1_700_000_000_000),
			cleaner:  logstore.NewCleaner(logstore.CleanerConfig{DedupeBufferBytes: 1 << 20, IOBufferBytes: 1000}),
			cfg:      CleanConfig{DeleteRetention: time.Minute},
			produced: map[int64]modelRecord{}, seqs: map[int64]int32{}, lastReq: map[int64][]byte{}, lastOff: map[int64]int64{},
			open: map[int64][]int64{}, steps: map[string]int{},
		}
		m.openPartition()
		for range steps {
			m.step()
			if t.Failed() {
				t.Fatalf("seed %d failed", seed)
			}
		}
		for pid := range maps.Clone(m.open) {
			m.endTxn(pid, true)
		}
		m.clean()
		m.p.Close()
		for k, v := range m.steps {
			total[k] += v
		}
	}
	t.Logf("%d seeds: %v", seeds, total)
}

// TestRequireKeys: a record without a key is refused for a compacted topic.
func TestRequireKeys(t *testing.T) {
	v := "v"
	if err := RequireKeys(keyedBatch(-1, -1, -1, false, 1, []string{"a", "b"}, []*string{&v, nil})); err != nil {
		t.Fatal(err)
	}
	var recs []byte
	for i, k := range [][]byte{[]byte("a"), nil} {
		r := kmsg.Record{OffsetDelta: int32(i), Key: k, Value: []byte("v")}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: 1, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 2, Records: recs}
	out := b.AppendTo(nil)
	b.Length = int32(len(out) - 12)
	out = b.AppendTo(nil)
	logstore.FixCRC(out)
	if err := RequireKeys(out); !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "without a key") {
		t.Fatalf("keyless record: %v", err)
	}
}

// TestACleanNeverOutrunsTheProducerSnapshot: a transaction open when the
// producer snapshot was taken, committed after it, then superseded and
// cleaned away; a restart from that snapshot must still find its marker,
// or it would hold the transaction, and the last stable offset, open for
// ever. A clean therefore reaches only what the snapshot covers.
func TestACleanNeverOutrunsTheProducerSnapshot(t *testing.T) {
	mem := logstore.NewMemFS()
	now := time.UnixMilli(1_700_000_000_000)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	open := func(fsys logstore.FS) *Partition {
		p, err := Open(Config{Topic: "t", FS: fsys, Dir: "/d/0", SnapshotPath: "/d/0.producers", Now: clock,
			Log: logstore.Config{SegmentBytes: 200, CheckpointInterval: time.Hour}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := open(mem)
	ctx := context.Background()
	app := func(b []byte) {
		res, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		p.WaitDurable(ctx, res.LastOffset+1)
	}
	v := "x"
	app(keyedBatch(9, 0, 0, true, clock().UnixMilli(), []string{"k"}, []*string{&v}))
	if err := p.Snapshot(); err != nil { // the transaction is open here
		t.Fatal(err)
	}
	if _, err := p.WriteMarker(ctx, 9, 0, true, 0); err != nil {
		t.Fatal(err)
	}
	// The producer's last batch (which a clean keeps) comes after.
	app(keyedBatch(9, 0, 1, false, clock().UnixMilli(), []string{"other"}, []*string{&v}))
	c := logstore.NewCleaner(logstore.CleanerConfig{DedupeBufferBytes: 1 << 20})
	for range 3 {
		for i := range 10 {
			w := fmt.Sprint(i)
			app(keyedBatch(-1, -1, -1, false, clock().UnixMilli(), []string{"k"}, []*string{&w}))
		}
		if _, err := p.Clean(ctx, c, CleanConfig{DeleteRetention: time.Second}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		now = now.Add(time.Minute)
		mu.Unlock()
	}
	crashed := mem.CrashClone(logstore.CrashOptions{}) // no snapshot since the first
	p.Close()
	p = open(crashed)
	defer p.Close()
	if lso, hwm := p.LastStableOffset(), p.HighWatermark(); lso != hwm {
		t.Fatalf("after the restart the last stable offset is %d, the high watermark %d: the committed transaction is held open", lso, hwm)
	}
}
