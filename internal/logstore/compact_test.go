package logstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// compactLog opens a log on MemFS with small segments and the test clock.
func compactLog(t *testing.T, fsys FS, clock *testClock, segBytes int64) *Log {
	t.Helper()
	return mustOpen(t, fsys, "/p", Config{SegmentBytes: segBytes, IndexIntervalBytes: 200, Logger: quietLogger, Now: clock.Now, CheckpointInterval: time.Hour})
}

func clean(t *testing.T, c *Cleaner, l *Log, opts CleanOptions) CleanStats {
	t.Helper()
	if opts.StableOffset == 0 {
		opts.StableOffset = l.DurableOffset()
	}
	if opts.DeleteRetention == 0 {
		opts.DeleteRetention = time.Hour
	}
	st, err := c.Clean(context.Background(), l, opts)
	if err != nil {
		t.Fatalf("clean: %v", err)
	}
	return st
}

// expectCompacted checks after against before cleaned up to end: below end,
// only the latest record per key survives (tombstones included, records
// without a key gone); from end on nothing changed; and every surviving
// record kept its offset, key, value and timestamp.
func expectCompacted(t *testing.T, before, after []storedRecord, end int64) {
	t.Helper()
	var mapped []storedRecord
	for _, r := range before {
		if r.Offset < end {
			mapped = append(mapped, r)
		}
	}
	latest := latestByKey(mapped)
	var want []storedRecord
	for _, r := range before {
		if r.Offset >= end || (!r.NoKey && latest[r.Key].Offset == r.Offset) {
			want = append(want, r)
		}
	}
	if len(want) != len(after) {
		t.Fatalf("after cleaning to %d: %d records, want %d\nafter: %v\nwant:  %v", end, len(after), len(want), brief(after), brief(want))
	}
	for i := range want {
		w, a := want[i], after[i]
		if w.Offset != a.Offset || w.Key != a.Key || w.Value != a.Value || w.Tombstone != a.Tombstone || w.TS != a.TS {
			t.Fatalf("record %d: got %+v, want %+v", i, brief(after[i:i+1]), brief(want[i:i+1]))
		}
		if a.Batch.BaseOffset > a.Offset || a.Batch.LastOffset() != w.Batch.LastOffset() || a.Batch.BaseOffset != w.Batch.BaseOffset {
			t.Fatalf("record at %d: batch %d..%d, was in %d..%d", a.Offset, a.Batch.BaseOffset, a.Batch.LastOffset(), w.Batch.BaseOffset, w.Batch.LastOffset())
		}
		if a.Batch.NumRecords > 0 && (a.Batch.Compression() != w.Batch.Compression() || a.Batch.ProducerID != w.Batch.ProducerID ||
			a.Batch.ProducerEpoch != w.Batch.ProducerEpoch || a.Batch.BaseSequence != w.Batch.BaseSequence) {
			t.Fatalf("record at %d: batch fields changed: %+v, was %+v", a.Offset, a.Batch, w.Batch)
		}
	}
}

func brief(recs []storedRecord) string {
	s := ""
	for _, r := range recs {
		v := r.Value
		if r.Tombstone {
			v = "∅"
		}
		s += fmt.Sprintf("%d:%s=%s ", r.Offset, r.Key, v)
	}
	return s
}

func TestCleanKeepsTheLatestRecordPerKey(t *testing.T) {
	for _, codec := range []int8{codecNone, codecGzip, codecSnappy, codecLz4, codecZstd} {
		t.Run(fmt.Sprintf("codec=%d", codec), func(t *testing.T) {
			clock := newTestClock()
			fsys := NewMemFS()
			l := compactLog(t, fsys, clock, 600)
			defer func() { l.Close() }()
			rng := rand.New(rand.NewPCG(uint64(codec), 1))
			for i := range 60 {
				var recs []kv
				for j := range 1 + rng.IntN(4) {
					recs = append(recs, put(fmt.Sprintf("k%d", rng.IntN(8)), fmt.Sprintf("v%d.%d", i, j)))
				}
				if i%13 == 5 {
					recs = append(recs, kv{NoKey: true, Value: []byte("keyless")})
				}
				spec := plainSpec(clock.Millis())
				spec.codec, spec.xerialSnap = codec, i%2 == 0
				mustAppendDurable(t, l, keyedBatch(t, spec, recs...))
			}
			before, _ := readBack(t, l)
			activeBase := l.SegmentBases()[len(l.SegmentBases())-1]
			segsBefore := len(l.SegmentBases())
			st := clean(t, testCleaner(), l, CleanOptions{})
			if st.CleanedTo != activeBase || st.GroupsSwapped == 0 {
				t.Fatalf("cleaned to %d (active segment at %d), %d groups swapped", st.CleanedTo, activeBase, st.GroupsSwapped)
			}
			after, _ := readBack(t, l)
			expectCompacted(t, before, after, activeBase)
			// Groups are formed by the sizes before cleaning, as in Kafka,
			// so the shrunk segments merge in the next round.
			for n := len(l.SegmentBases()); len(l.SegmentBases()) < n+2; {
				mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put("k1", "next"), put("k2", "next")))
			}
			after, _ = readBack(t, l)
			activeBase = l.SegmentBases()[len(l.SegmentBases())-1]
			clean(t, testCleaner(), l, CleanOptions{})
			merged, _ := readBack(t, l)
			expectCompacted(t, after, merged, activeBase)
			after = merged
			if n := len(l.SegmentBases()); n > segsBefore/2+1 {
				t.Fatalf("%d segments before cleaning, %d after two rounds: groups should merge", segsBefore, n)
			}
			// A round with nothing new does nothing.
			st = clean(t, testCleaner(), l, CleanOptions{})
			if st.GroupsSwapped != 0 || st.BytesRead != 0 {
				t.Fatalf("a clean of a clean log read %d bytes and swapped %d groups", st.BytesRead, st.GroupsSwapped)
			}
			// Reopened, the log validates and serves the same.
			l.Close()
			l = compactLog(t, fsys, clock, 600)
			reopened, _ := readBack(t, l)
			expectCompacted(t, after, reopened, 0)
			mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put("k1", "after-restart")))
		})
	}
}

// TestReadInAGapStartsAtTheNextBatch: a fetch at an offset the cleaner
// removed gets the next batch, as in Kafka.
func TestReadInAGapStartsAtTheNextBatch(t *testing.T) {
	clock := newTestClock()
	l := compactLog(t, NewMemFS(), clock, 300)
	defer l.Close()
	for i := range 20 {
		mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put("same", fmt.Sprint(i)), put(fmt.Sprint("u", i), "x")))
	}
	clean(t, testCleaner(), l, CleanOptions{})
	recs, batches := readBack(t, l)
	if len(batches) < 3 {
		t.Fatalf("only %d batches", len(batches))
	}
	for off := l.StartOffset(); off < l.DurableOffset(); off++ {
		b, err := l.Read(off, 1, l.DurableOffset())
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		h := splitBatches(t, b)[0]
		if h.LastOffset() < off {
			t.Fatalf("read at %d returned batch %d..%d", off, h.BaseOffset, h.LastOffset())
		}
		for _, r := range recs {
			if r.Offset >= off {
				if h.BaseOffset > r.Offset {
					t.Fatalf("read at %d skipped the record at %d (got batch %d..)", off, r.Offset, h.BaseOffset)
				}
				break
			}
		}
	}
}

// TestTombstonesGoOnlyAfterTheirDeleteHorizon follows KIP-534: the first
// clean keeps a tombstone and stamps its batch's delete horizon; only a
// clean after it removes the tombstone.
func TestTombstonesGoOnlyAfterTheirDeleteHorizon(t *testing.T) {
	clock := newTestClock()
	l := compactLog(t, NewMemFS(), clock, 200)
	defer l.Close()
	app := func(recs ...kv) { mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), recs...)) }
	app(put("a", "1"), put("b", "1"))
	app(put("a", "2"))
	app(del("a"))
	for i := range 4 {
		app(put(fmt.Sprint("filler", i), "x"))
	}
	c := testCleaner()
	clean(t, c, l, CleanOptions{DeleteRetention: time.Minute})
	recs, _ := readBack(t, l)
	m := latestByKey(recs)
	if r, ok := m["a"]; !ok || !r.Tombstone || r.Batch.Attributes&attrDeleteHorizon == 0 || r.Batch.FirstTimestamp != clock.Millis()+time.Minute.Milliseconds() {
		t.Fatalf("after the first clean the tombstone should stay with its horizon set: %+v", r)
	}
	if n := countKey(recs, "a"); n != 1 {
		t.Fatalf("%d records of a after the first clean, want the tombstone only", n)
	}
	if st := l.CleaningState(l.DurableOffset(), 0); st.HorizonDue {
		t.Fatal("horizon reported due before it passed")
	}
	clock.Advance(30 * time.Second)
	clean(t, c, l, CleanOptions{DeleteRetention: time.Minute})
	if recs, _ = readBack(t, l); countKey(recs, "a") != 1 {
		t.Fatal("tombstone removed before its horizon")
	}
	clock.Advance(31 * time.Second)
	if st := l.CleaningState(l.DurableOffset(), 0); !st.HorizonDue {
		t.Fatal("horizon passed but not reported due")
	}
	clean(t, c, l, CleanOptions{DeleteRetention: time.Minute})
	if recs, _ = readBack(t, l); countKey(recs, "a") != 0 || countKey(recs, "b") != 1 {
		t.Fatalf("after the horizon: %s", brief(recs))
	}
	if st := l.CleaningState(l.DurableOffset(), 0); st.HorizonDue {
		t.Fatal("horizon still due after the tombstone went")
	}
}

func countKey(recs []storedRecord, key string) int {
	n := 0
	for _, r := range recs {
		if r.Key == key {
			n++
		}
	}
	return n
}

// TestCleanRespectsStableOffsetAndLag: nothing at or above the last stable
// offset, in the active segment or younger than min.compaction.lag.ms is
// cleaned.
func TestCleanRespectsStableOffsetAndLag(t *testing.T) {
	clock := newTestClock()
	l := compactLog(t, NewMemFS(), clock, 150)
	defer l.Close()
	for i := range 30 {
		mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put("k", fmt.Sprint(i))))
		clock.Advance(time.Second)
	}
	before, _ := readBack(t, l)
	bases := l.SegmentBases()
	stable := bases[len(bases)/2] + 1 // inside a segment: that one is not cleanable
	st := clean(t, testCleaner(), l, CleanOptions{StableOffset: stable})
	if st.CleanedTo > stable {
		t.Fatalf("cleaned to %d beyond the stable offset %d", st.CleanedTo, stable)
	}
	after, _ := readBack(t, l)
	expectCompacted(t, before, after, st.CleanedTo)
	for _, r := range before {
		if r.Offset >= stable-1 && countKey(after, r.Key) > 0 {
			found := false
			for _, a := range after {
				found = found || a.Offset == r.Offset
			}
			if !found {
				t.Fatalf("record at %d (at or above the stable segment) removed", r.Offset)
			}
		}
	}
	// min.compaction.lag.ms: only segments whose newest record is older.
	lagged := clean(t, testCleaner(), l, CleanOptions{MinCompactionLag: 10 * time.Second})
	cutoff := clock.Millis() - 10_000
	for _, r := range after {
		if r.Offset < lagged.CleanedTo && r.TS > cutoff {
			t.Fatalf("record at %d with timestamp %d cleaned within the lag (cutoff %d)", r.Offset, r.TS, cutoff)
		}
	}
}

// TestCleanRemovesAbortedTransactionsAndThenTheirMarkers: aborted records go
// at once; a marker goes once its transaction has no batch left and its
// delete horizon has passed; a committed transaction keeps its marker while
// any of its batches remains.
func TestCleanRemovesAbortedTransactionsAndThenTheirMarkers(t *testing.T) {
	clock := newTestClock()
	l := compactLog(t, NewMemFS(), clock, 250)
	defer l.Close()
	txn := func(pid int64, recs ...kv) AppendInfo {
		spec := plainSpec(clock.Millis())
		spec.pid, spec.epoch, spec.seq, spec.txn = pid, 0, 0, true
		return mustAppendDurable(t, l, keyedBatch(t, spec, recs...))
	}
	a := txn(7, put("x", "aborted"), put("y", "aborted"))
	abortAt := mustAppendDurable(t, l, markerBatchForTest(7, 0, false, clock.Millis()))
	txn(8, put("x", "committed"))
	commitAt := mustAppendDurable(t, l, markerBatchForTest(8, 0, true, clock.Millis()))
	for i := range 6 {
		mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put(fmt.Sprint("f", i), "x")))
	}
	aborted := []AbortedRange{{ProducerID: 7, FirstOffset: a.BaseOffset, LastOffset: abortAt.BaseOffset}}
	c := testCleaner()
	opts := CleanOptions{Aborted: aborted, DeleteRetention: time.Minute}
	more := func() { // a round runs only when there is something dirty
		for range 3 {
			mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put("more", "x")))
		}
	}
	clean(t, c, l, opts)
	_, batches := readBack(t, l)
	has := func(off int64) *BatchHeader {
		for i := range batches {
			if batches[i].BaseOffset == off {
				return &batches[i]
			}
		}
		return nil
	}
	if has(a.BaseOffset) != nil {
		t.Fatal("aborted batch survived the clean")
	}
	if has(abortAt.BaseOffset) == nil || has(commitAt.BaseOffset) == nil {
		t.Fatal("markers must stay while their transactions' batches were just seen")
	}
	// Round two: the abort marker's transaction is gone, so it gets a
	// delete horizon; the committed one keeps its record, so its marker
	// stays without one.
	more()
	clean(t, c, l, opts)
	_, batches = readBack(t, l)
	if m := has(abortAt.BaseOffset); m == nil || m.Attributes&attrDeleteHorizon == 0 {
		t.Fatalf("abort marker should carry a delete horizon now: %+v", m)
	}
	if m := has(commitAt.BaseOffset); m == nil || m.Attributes&attrDeleteHorizon != 0 {
		t.Fatalf("commit marker of a live transaction must stay as it was: %+v", m)
	}
	clock.Advance(2 * time.Minute)
	more()
	clean(t, c, l, opts)
	_, batches = readBack(t, l)
	if has(abortAt.BaseOffset) != nil {
		t.Fatal("abort marker survived its delete horizon")
	}
	if has(commitAt.BaseOffset) == nil {
		t.Fatal("commit marker removed while its transaction's record remains")
	}
}

// TestCleanKeepsTheLastBatchOfEveryLiveProducer: a producer's last batch is
// kept, empty if its records were all superseded, with its sequence fields.
func TestCleanKeepsTheLastBatchOfEveryLiveProducer(t *testing.T) {
	clock := newTestClock()
	l := compactLog(t, NewMemFS(), clock, 200)
	defer l.Close()
	var last AppendInfo
	for i := range 5 {
		spec := plainSpec(clock.Millis())
		spec.pid, spec.epoch, spec.seq, spec.codec = 42, 3, int32(2*i), codecZstd
		last = mustAppendDurable(t, l, keyedBatch(t, spec, put("k", fmt.Sprint("p", i)), put("j", fmt.Sprint("p", i))))
	}
	for i := range 6 {
		mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put("k", fmt.Sprint("o", i)), put("j", "o")))
	}
	clean(t, testCleaner(), l, CleanOptions{ProducerLastOffsets: map[int64]int64{42: last.LastOffset}})
	_, batches := readBack(t, l)
	// Other batches of the producer may remain as the empty last batch of
	// a segment group; only the producer's last one must.
	var kept *BatchHeader
	for i, h := range batches {
		if h.ProducerID == 42 && h.BaseOffset == last.BaseOffset {
			kept = &batches[i]
		} else if h.ProducerID == 42 && h.NumRecords != 0 {
			t.Fatalf("superseded batch of producer 42 kept with records: %+v", h)
		}
	}
	if kept == nil || kept.BaseOffset != last.BaseOffset || kept.LastOffset() != last.LastOffset || kept.NumRecords != 0 ||
		kept.BaseSequence != 8 || kept.ProducerEpoch != 3 || kept.Compression() != 0 {
		t.Fatalf("producer's last batch not kept empty with its fields: %+v", kept)
	}
}

// TestKeyMapStaysWithinItsBound: the table never takes more than its byte
// bound, answers every key it took, and stops taking keys at its load
// factor.
func TestKeyMapStaysWithinItsBound(t *testing.T) {
	for _, maxBytes := range []int64{48, 1000, 24 << 10, 1 << 20} {
		m := newKeyMap(maxBytes, 0.9)
		n := 0
		for m.room(1) {
			m.put([]byte(fmt.Sprint("key-", n)), int64(n))
			n++
			if m.bytes() > maxBytes {
				t.Fatalf("bound %d: the table holds %d bytes", maxBytes, m.bytes())
			}
		}
		if n != m.capacity() || n < 1 {
			t.Fatalf("bound %d: took %d keys, capacity %d", maxBytes, n, m.capacity())
		}
		for i := range n {
			if got := m.get([]byte(fmt.Sprint("key-", i))); got != int64(i) {
				t.Fatalf("bound %d: key %d maps to %d", maxBytes, i, got)
			}
		}
		if m.get([]byte("absent")) != -1 {
			t.Fatalf("bound %d: an absent key is found", maxBytes)
		}
		m.put([]byte("key-0"), 1<<40) // an update takes no room
		if m.get([]byte("key-0")) != 1<<40 || m.used != n {
			t.Fatal("update")
		}
	}
}

// TestAFullKeyMapCleansInSeveralRounds: when the key map cannot hold the
// dirty part's keys, a round cleans up to where it mapped and the next
// rounds go on, with the same result as one big round.
func TestAFullKeyMapCleansInSeveralRounds(t *testing.T) {
	clock := newTestClock()
	l := compactLog(t, NewMemFS(), clock, 800)
	defer l.Close()
	for i := range 120 {
		mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put(fmt.Sprint("k", i%60), fmt.Sprint(i)), put(fmt.Sprint("k", (i*7)%60), fmt.Sprint(i))))
	}
	before, _ := readBack(t, l)
	end := l.SegmentBases()[len(l.SegmentBases())-1]
	c := NewCleaner(CleanerConfig{DedupeBufferBytes: 24 * 32, IOBufferBytes: 512}) // 32 slots: 28 keys
	rounds := 0
	for {
		st := clean(t, c, l, CleanOptions{})
		if st.CleanedTo == st.FirstDirty {
			break
		}
		rounds++
		if st.Keys > c.keys.capacity() {
			t.Fatalf("mapped %d keys with room for %d", st.Keys, c.keys.capacity())
		}
	}
	if rounds < 3 {
		t.Fatalf("%d rounds: the map should have filled", rounds)
	}
	after, _ := readBack(t, l)
	expectCompacted(t, before, after, end)
}
