package partition

import (
	"errors"
	"math"
	"testing"
)

func never(*producerEntry) bool { return false }

func TestProducerRules(t *testing.T) {
	ps := producers{}
	add := func(pid int64, epoch int16, first, last int32, off int64) {
		ps.update(pid, epoch, batchMeta{FirstSeq: first, LastSeq: last, FirstOffset: off, LastOffset: off + int64(last-first)}, 1)
	}
	// Unknown producers are accepted at any sequence (KIP-360).
	if dup, err := ps.check(1, 0, 17, 20, never); dup != nil || err != nil {
		t.Fatal(dup, err)
	}
	for i := range 7 {
		add(1, 0, int32(i*2), int32(i*2+1), int64(i*2))
	}
	// The last five batches are remembered; older ones are not.
	for i := 2; i < 7; i++ {
		dup, err := ps.check(1, 0, int32(i*2), int32(i*2+1), never)
		if err != nil || dup == nil || dup.FirstOffset != int64(i*2) {
			t.Fatalf("batch %d: dup %v err %v", i, dup, err)
		}
	}
	if _, err := ps.check(1, 0, 2, 3, never); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("forgotten old batch: %v", err)
	}
	if dup, err := ps.check(1, 0, 14, 15, never); dup != nil || err != nil {
		t.Fatalf("next in sequence: %v %v", dup, err)
	}
	if _, err := ps.check(1, 0, 16, 16, never); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap: %v", err)
	}
	// Partial overlap with a remembered batch is not a duplicate.
	if _, err := ps.check(1, 0, 12, 12, never); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("overlap: %v", err)
	}
	// Epochs.
	if _, err := ps.check(1, 1, 3, 3, never); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("new epoch not at 0: %v", err)
	}
	if dup, err := ps.check(1, 1, 0, 0, never); dup != nil || err != nil {
		t.Fatalf("new epoch at 0: %v %v", dup, err)
	}
	add(1, 1, 0, 0, 100)
	if len(ps[1].Batches) != 1 {
		t.Fatalf("new epoch kept %d old batches", len(ps[1].Batches))
	}
	if _, err := ps.check(1, 0, 14, 15, never); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("old epoch: %v", err)
	}
	// Expired state is forgotten.
	if dup, err := ps.check(1, 1, 50, 50, func(*producerEntry) bool { return true }); dup != nil || err != nil {
		t.Fatalf("expired: %v %v", dup, err)
	}
	// Sequence wrap-around.
	add(2, 0, math.MaxInt32-1, math.MaxInt32, 200)
	if dup, err := ps.check(2, 0, 0, 4, never); dup != nil || err != nil {
		t.Fatalf("wrap: %v %v", dup, err)
	}
	if got := lastSeqOf(math.MaxInt32-1, 3); got != 1 {
		t.Fatalf("lastSeqOf wrap = %d", got)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	ps := producers{}
	for pid := int64(0); pid < 20; pid++ {
		for i := range int(pid % 8) {
			ps.update(pid, int16(pid%3), batchMeta{FirstSeq: int32(i), LastSeq: int32(i), FirstOffset: int64(i), LastOffset: int64(i)}, pid*1000)
		}
		if pid%8 == 0 {
			ps.update(pid, 0, batchMeta{}, 5)
		}
	}
	aborted := []AbortedTxn{{ProducerID: 3, FirstOffset: 10, LastOffset: 20}, {ProducerID: 4, FirstOffset: 5, LastOffset: 30}}
	ps[5].TxnFirst = 77
	data := ps.encode(1234, aborted)
	got, gotAborted, off, err := decodeSnapshot(data)
	if err != nil || off != 1234 || len(got) != len(ps) {
		t.Fatalf("decode: %v off %d len %d", err, off, len(got))
	}
	for pid, e := range ps {
		g := got[pid]
		if g == nil || g.Epoch != e.Epoch || g.LastTime != e.LastTime || g.TxnFirst != e.TxnFirst || len(g.Batches) != len(e.Batches) {
			t.Fatalf("pid %d: %+v vs %+v", pid, g, e)
		}
	}
	if len(gotAborted) != 2 || gotAborted[1] != aborted[1] {
		t.Fatalf("aborted %v", gotAborted)
	}
	// Every truncation and every single-bit flip is rejected, never a panic.
	for n := range len(data) {
		if _, _, _, err := decodeSnapshot(data[:n]); err == nil {
			t.Fatalf("truncated to %d accepted", n)
		}
	}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x10
		if _, _, _, err := decodeSnapshot(bad); err == nil {
			t.Fatalf("flip at %d accepted", i)
		}
	}
}

func FuzzSnapshot(f *testing.F) {
	ps := producers{}
	ps.update(7, 1, batchMeta{FirstSeq: 1, LastSeq: 2, FirstOffset: 3, LastOffset: 4}, 9)
	f.Add(ps.encode(10, []AbortedTxn{{1, 2, 3}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, aborted, off, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		// A snapshot that decodes re-encodes to the same bytes.
		if again := got.encode(off, aborted); string(again) != string(b) {
			t.Fatalf("re-encoding differs")
		}
	})
}
