package txn

import (
	"context"
	"testing"
	"time"
)

// Stats counts each outcome once: begun at the first add, committed and
// aborted at the durable decision, timed_out (not aborted) for the timer's
// abort, aborted for the fence of a new instance, and every fenced request.
func TestStatsCountOutcomes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tp := []TopicPartition{{"t", 0}}
	want := func(what string, w Stats) {
		t.Helper()
		if got := e.c.Stats(); got != w {
			t.Fatalf("%s: stats %+v, want %+v", what, got, w)
		}
	}

	p := e.init("a")
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, tp), nil)
	wantErr(t, "add again", e.c.AddOffsets(ctx, "a", p.ProducerID, p.Epoch, "g"), nil) // same transaction
	wantErr(t, "commit", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true), nil)
	e.waitIdle()
	wantErr(t, "commit retry", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true), nil) // a retry decides nothing
	want("commit", Stats{Begun: 1, Committed: 1})

	wantErr(t, "add 2", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, tp), nil)
	wantErr(t, "abort", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, false), nil)
	e.waitIdle()
	want("abort", Stats{Begun: 2, Committed: 1, Aborted: 1})

	// The timer aborts a transaction older than its timeout.
	wantErr(t, "add 3", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, tp), nil)
	e.clock.Advance(2 * time.Minute)
	e.c.tick()
	e.waitIdle()
	want("timeout", Stats{Begun: 3, Committed: 1, Aborted: 1, TimedOut: 1})
	// Its producer is fenced now.
	wantErr(t, "add after timeout", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, tp), ErrProducerFenced)
	want("fenced", Stats{Begun: 3, Committed: 1, Aborted: 1, TimedOut: 1, Fenced: 1})

	// A new instance aborts the open transaction of the old one.
	q := e.init("b")
	wantErr(t, "add b", e.c.AddPartitions(ctx, "b", q.ProducerID, q.Epoch, tp), nil)
	if _, err := e.c.InitProducerID(ctx, "b", time.Minute, NoProducer); err != ErrConcurrentTransactions {
		t.Fatalf("init over an open transaction: %v", err)
	}
	e.waitIdle()
	e.init("b")
	wantErr(t, "old instance", e.c.EndTxn(ctx, "b", q.ProducerID, q.Epoch, true), ErrProducerFenced)
	want("new instance", Stats{Begun: 4, Committed: 1, Aborted: 2, TimedOut: 1, Fenced: 2})
}
