package txn

import (
	"context"
	"testing"
)

// TestVersion2RotationSurvivesACrashBeforeItsCompletion: an EndTxnV2 at an
// exhausted epoch hands the client a new producer id as soon as the
// decision is durable, before the markers. If power is lost then, the
// restarted coordinator must still know the decision, write the markers at
// the old id's last epoch, and hand over to the very id the client was
// given, so that the client's next transaction is served.
func TestVersion2RotationSurvivesACrashBeforeItsCompletion(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.init("a")
	e.c.mu.Lock()
	s := e.c.txns["a"].s.clone()
	s.epoch = 32766
	if _, err := e.c.writeLocked("a", &s); err != nil {
		t.Fatal(err)
	}
	e.c.mu.Unlock()
	wantErr(t, "add", e.c.AddPartitionsImplicit(ctx, "a", 1000, 32766, []TopicPartition{{"t", 0}}), nil)
	// Markers never complete before the crash.
	block := make(chan struct{})
	e.rec.setHook(func(ctx context.Context, m marker) error {
		select {
		case <-block:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	e.c.cfg.CompletionWait = 0
	next, err := e.c.EndTxnV2(ctx, "a", 1000, 32766, true)
	wantErr(t, "EndTxnV2", err, nil)
	if next != (ProducerIDEpoch{1001, 0}) {
		t.Fatalf("handed over %v, want a new producer id at epoch 0", next)
	}
	if st, ok := durableState(t, e.fs, "a"); !ok || st.state != PrepareCommit || st.nextPID != 1001 || st.epoch != 32767 {
		t.Fatalf("durable state %+v, want PrepareCommit at 32767 handing over to 1001", st)
	}
	// The client already produces with the new id: told to retry.
	wantErr(t, "add with the new id while the markers are written", e.c.AddPartitionsImplicit(ctx, "a", 1001, 0, []TopicPartition{{"t", 1}}), ErrConcurrentTransactions)
	close(block)
	e.rec.setHook(nil)
	e.crash()
	e.waitIdle()
	markers := e.rec.take()
	found := false
	for _, m := range markers {
		found = found || m == "COMMIT t/0 pid=1000 epoch=32767"
	}
	if !found {
		t.Fatalf("markers after the restart %q, want the commit at the old id's last epoch", markers)
	}
	info, err := e.c.Describe("a")
	wantErr(t, "describe", err, nil)
	if info.ProducerID != 1001 || info.ProducerEpoch != 0 || info.State != CompleteCommit || info.TransactionVersion != 2 {
		t.Fatalf("after the restart: %+v", info)
	}
	wantErr(t, "the next transaction with the new id", e.c.AddPartitionsImplicit(ctx, "a", 1001, 0, []TopicPartition{{"t", 1}}), nil)
	wantErr(t, "a late request of the old id", e.c.Verify(1000, 32766, "t", 0), ErrProducerFenced)
	// A retry of the rotating EndTxn (old id, its last handed-out epoch) is
	// not the current transaction's end: the new one is Ongoing now.
	_, err = e.c.EndTxnV2(ctx, "a", 1000, 32766, true)
	wantErr(t, "retry of the rotation while the next transaction is open", err, ErrProducerFenced)
}
