package partition

import (
	"context"
	"errors"
	"testing"

	"github.com/idem-dev/idem/internal/logstore"
)

func txnBatch(pid int64, epoch int16, seq int32, n int) []byte {
	b := batch(pid, epoch, seq, n)
	b[22] |= 0x10
	logstore.FixCRC(b)
	return b
}

func TestTransactionsLSOAndAbortedIndex(t *testing.T) {
	mem := logstore.NewMemFS()
	p := openTest(t, mem)
	ctx := context.Background()
	mustAppend := func(b []byte) AppendResult {
		t.Helper()
		r, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitDurable(ctx, r.LastOffset+1); err != nil {
			t.Fatal(err)
		}
		return r
	}
	mustAppend(batch(-1, -1, -1, 2)) // 0-1 plain
	mustAppend(txnBatch(7, 0, 0, 2)) // 2-3 txn A (pid 7)
	mustAppend(batch(-1, -1, -1, 1)) // 4 plain
	mustAppend(txnBatch(8, 0, 0, 1)) // 5 txn B (pid 8)
	if lso := p.LastStableOffset(); lso != 2 {
		t.Fatalf("LSO %d, want 2 (first offset of the open transaction)", lso)
	}
	// A non-transactional write while pid 7's transaction is open is refused.
	if _, err := p.Append(batch(7, 0, 2, 1)); !errors.Is(err, ErrInvalidTxnState) {
		t.Fatalf("plain write inside a transaction: %v", err)
	}
	off, err := p.WriteMarker(ctx, 7, 0, false, 0) // abort A at 6
	if err != nil || off != 6 {
		t.Fatalf("abort marker at %d: %v", off, err)
	}
	if lso := p.LastStableOffset(); lso != 5 {
		t.Fatalf("LSO %d after aborting A, want 5", lso)
	}
	if _, err := p.WriteMarker(ctx, 8, 0, true, 0); err != nil { // commit B at 7
		t.Fatal(err)
	}
	if lso, hwm := p.LastStableOffset(), p.HighWatermark(); lso != hwm || hwm != 8 {
		t.Fatalf("LSO %d HWM %d", lso, hwm)
	}
	want := []AbortedTxn{{ProducerID: 7, FirstOffset: 2, LastOffset: 6}}
	if got := p.AbortedTransactions(0, 8); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("aborted %v", got)
	}
	if got := p.AbortedTransactions(7, 8); len(got) != 0 {
		t.Fatalf("aborted after the marker: %v", got)
	}
	if got := p.AbortedTransactions(0, 2); len(got) != 0 {
		t.Fatalf("aborted before the transaction: %v", got)
	}
	// A fenced epoch cannot write markers.
	if _, err := p.WriteMarker(ctx, 7, 0, true, 0); err != nil {
		t.Fatal(err) // same epoch: allowed (idempotent)
	}
	if _, err := p.WriteMarker(ctx, 7, 1, false, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteMarker(ctx, 7, 0, false, 0); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("stale marker: %v", err)
	}
	// Open another transaction, then check everything survives a power loss
	// (replay from the log) and a clean restart (snapshot).
	mustAppend(txnBatch(9, 0, 0, 1))
	check := func(p *Partition) {
		t.Helper()
		if got := p.AbortedTransactions(0, 100); len(got) != 1 || got[0] != want[0] {
			t.Fatalf("aborted after restart: %v", got)
		}
		if lso := p.LastStableOffset(); lso != 10 {
			t.Fatalf("LSO after restart %d, want 10", lso)
		}
		if _, err := p.Append(batch(9, 0, 1, 1)); !errors.Is(err, ErrInvalidTxnState) {
			t.Fatalf("open transaction forgotten: %v", err)
		}
	}
	crashed := mem.CrashClone(logstore.CrashOptions{})
	q := openTest(t, crashed)
	check(q)
	q.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	r := openTest(t, mem)
	defer r.Close()
	check(r)
}
