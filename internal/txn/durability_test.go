package txn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idem-dev/idem/internal/logstore"
)

// The decision must be durable before the first marker: a power loss while
// any marker is being written must leave a log that says PrepareCommit (or
// PrepareAbort), never Ongoing.
func TestDecisionIsDurableBeforeAnyMarker(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprint("commit=", commit), func(t *testing.T) {
			e := newEnv(t)
			p := e.init("a")
			ctx := context.Background()
			wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}, {"t", 1}, {"u", 0}}), nil)
			wantErr(t, "offsets", e.c.AddOffsets(ctx, "a", p.ProducerID, p.Epoch, "g"), nil)
			want := PrepareAbort
			if commit {
				want = PrepareCommit
			}
			var checked atomic.Int32
			e.rec.setHook(func(_ context.Context, m marker) error {
				s, ok := durableState(t, e.fs, "a")
				if !ok || s.state != want {
					t.Errorf("marker %v written while the durable state is %v (found %v), want %v", m, s.state, ok, want)
				}
				checked.Add(1)
				return nil
			})
			wantErr(t, "EndTxn", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, commit), nil)
			if checked.Load() != 4 {
				t.Fatalf("checked %d markers, want 4 (3 partitions, 1 group)", checked.Load())
			}
		})
	}
}

// A power loss after the decision and before (or during) the markers: the
// reopened coordinator finishes the transaction with the same outcome and
// epoch, writing every marker, and only then answers the producer again.
func TestCrashAfterDecisionFinishesTheTransaction(t *testing.T) {
	type tc struct {
		name        string
		end         func(e *env, p ProducerIDEpoch) // reaches the decision
		wantMarkers []string
		wantState   State
		wantEpoch   int16
	}
	ctx := context.Background()
	cases := []tc{
		{
			name: "commit",
			end: func(e *env, p ProducerIDEpoch) {
				// The decision is made; the markers hang, so EndTxn gives
				// up waiting after CompletionWait but reports success.
				wantErr(e.t, "EndTxn", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true), nil)
			},
			wantMarkers: []string{"COMMIT group:g pid=1000 epoch=0", "COMMIT t/0 pid=1000 epoch=0", "COMMIT t/1 pid=1000 epoch=0"},
			wantState:   CompleteCommit,
		},
		{
			name: "abort",
			end: func(e *env, p ProducerIDEpoch) {
				cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
				wantErr(e.t, "EndTxn", e.c.EndTxn(cctx, "a", p.ProducerID, p.Epoch, false), nil)
			},
			wantMarkers: []string{"ABORT group:g pid=1000 epoch=0", "ABORT t/0 pid=1000 epoch=0", "ABORT t/1 pid=1000 epoch=0"},
			wantState:   CompleteAbort,
		},
		{
			name: "fence by a new instance",
			end: func(e *env, p ProducerIDEpoch) {
				_, err := e.c.InitProducerID(ctx, "a", time.Minute, NoProducer)
				wantErr(e.t, "InitProducerID", err, ErrConcurrentTransactions)
			},
			wantMarkers: []string{"ABORT group:g pid=1000 epoch=1", "ABORT t/0 pid=1000 epoch=1", "ABORT t/1 pid=1000 epoch=1"},
			wantState:   CompleteAbort,
			wantEpoch:   1,
		},
		{
			name: "timeout",
			end: func(e *env, p ProducerIDEpoch) {
				e.clock.Advance(2 * time.Minute)
				e.c.tick()
			},
			wantMarkers: []string{"ABORT group:g pid=1000 epoch=1", "ABORT t/0 pid=1000 epoch=1", "ABORT t/1 pid=1000 epoch=1"},
			wantState:   CompleteAbort,
			wantEpoch:   1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.CompletionWait = 50 * time.Millisecond })
			p := e.init("a")
			wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}, {"t", 1}}), nil)
			wantErr(t, "offsets", e.c.AddOffsets(ctx, "a", p.ProducerID, p.Epoch, "g"), nil)
			// Markers hang until the coordinator closes.
			var entered atomic.Int32
			e.rec.setHook(func(ctx context.Context, _ marker) error {
				entered.Add(1)
				<-ctx.Done()
				return ctx.Err()
			})
			c.end(e, p)
			for entered.Load() < 3 {
				time.Sleep(time.Millisecond)
			}
			e.rec.take()
			e.rec.setHook(nil)
			e.crash()
			e.waitIdle()
			equal(t, "markers after restart", e.rec.take(), c.wantMarkers)
			info, err := e.c.Describe("a")
			wantErr(t, "Describe", err, nil)
			if info.State != c.wantState || info.ProducerEpoch != c.wantEpoch || len(info.Partitions) != 0 {
				t.Fatalf("after restart: %+v, want state %v epoch %d and no partitions", info, c.wantState, c.wantEpoch)
			}
		})
	}
}

// Anything acknowledged survives a power loss at any later instant; here the
// loss comes right after each acknowledgement.
func TestAcknowledgedStateSurvivesPowerLoss(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := e.init("a")
	check := func(what string, want State, wantParts int) {
		t.Helper()
		s, ok := durableState(t, e.fs, "a")
		if !ok || s.state != want || len(s.partitions) != wantParts || s.epoch != p.Epoch || s.pid != p.ProducerID {
			t.Fatalf("after %s the durable state is %+v (found %v); want %v with %d partitions at %v", what, s, ok, want, wantParts, p)
		}
	}
	check("InitProducerId", Empty, 0)
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}}), nil)
	check("AddPartitions", Ongoing, 1)
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 1}}), nil)
	check("second AddPartitions", Ongoing, 2)
	wantErr(t, "commit", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true), nil)
	if s, _ := durableState(t, e.fs, "a"); s.state != PrepareCommit && s.state != CompleteCommit {
		t.Fatalf("after EndTxn the durable state is %v, want the commit decision or its completion", s.state)
	}
	p = e.init("a")
	check("a second InitProducerId", Empty, 0)
}

// A storage failure makes the coordinator refuse work rather than answer
// without durability, and Verify stops accepting writes.
func TestSyncFailureIsNotAcknowledged(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := e.init("a")
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}}), nil)
	e.fs.SetSyncError(errors.New("disk on fire"))
	err := e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 1}})
	wantErr(t, "add with failing fsync", err, ErrStorage)
	wantErr(t, "verify after the log failed", e.c.Verify(p.ProducerID, p.Epoch, "t", 0), ErrStorage)
	_, err = e.c.InitProducerID(ctx, "b", time.Minute, NoProducer)
	wantErr(t, "init after the log failed", err, ErrStorage)
}

// Markers are retried until they succeed; a partition that no longer exists,
// or that has seen a newer epoch of the producer, is skipped.
func TestMarkerFailuresAreRetried(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := e.init("a")
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}, {"gone", 0}, {"newer", 0}}), nil)
	var failures atomic.Int32
	e.rec.setHook(func(_ context.Context, m marker) error {
		switch {
		case strings.HasPrefix(m.Target, "gone/"):
			return fmt.Errorf("no such topic: %w", ErrUnknownPartition)
		case strings.HasPrefix(m.Target, "newer/"):
			return fmt.Errorf("marker: %w", ErrProducerFenced)
		case failures.Add(1) <= 3:
			return errors.New("partition busy")
		}
		return nil
	})
	wantErr(t, "EndTxn", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true), nil)
	equal(t, "markers", e.rec.take(), []string{"COMMIT t/0 pid=1000 epoch=0"})
	if e.state("a") != CompleteCommit {
		t.Fatalf("state %v, want CompleteCommit", e.state("a"))
	}
}

// While the markers of a decision are being written, every request that
// would change the transaction is told to retry, and a second EndTxn with
// the other outcome is refused.
func TestRequestsDuringCompletion(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := e.init("a")
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}}), nil)
	release := make(chan struct{})
	e.rec.setHook(func(ctx context.Context, _ marker) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	ended := make(chan error, 1)
	go func() { ended <- e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true) }()
	for e.stateNow("a") != PrepareCommit {
		time.Sleep(time.Millisecond)
	}
	wantErr(t, "EndTxn commit again", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true), ErrConcurrentTransactions)
	wantErr(t, "EndTxn abort", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, false), ErrInvalidTxnState)
	wantErr(t, "AddPartitions", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 1}}), ErrConcurrentTransactions)
	wantErr(t, "AddOffsets", e.c.AddOffsets(ctx, "a", p.ProducerID, p.Epoch, "g"), ErrConcurrentTransactions)
	_, err := e.c.InitProducerID(ctx, "a", time.Minute, NoProducer)
	wantErr(t, "InitProducerID", err, ErrConcurrentTransactions)
	wantErr(t, "Verify", e.c.Verify(p.ProducerID, p.Epoch, "t", 0), ErrInvalidTxnState)
	select {
	case err := <-ended:
		t.Fatalf("EndTxn returned %v before its markers were written", err)
	default:
	}
	close(release)
	wantErr(t, "EndTxn", <-ended, nil)
	if s := e.stateNow("a"); s != CompleteCommit {
		t.Fatalf("state %v, want CompleteCommit", s)
	}
	wantErr(t, "AddPartitions after completion", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 1}}), nil)
}

// A transition is shown only once its record is durable, as Kafka shows a
// transaction's state and not its pending one. While the PrepareCommit
// record waits for its fsync, Describe and List still show Ongoing and a
// conflicting EndTxn is told to retry; once the decision is durable,
// Describe shows PrepareCommit and an abort is refused as invalid. (Showing
// PrepareCommit before the fsync made TestRequestsDuringCompletion flaky: it
// waits for PrepareCommit and then expects INVALID_TXN_STATE.)
func TestPendingTransitionIsNotShown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := e.init("a")
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}}), nil)
	release := make(chan struct{})
	e.rec.setHook(func(ctx context.Context, _ marker) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	var holding atomic.Bool
	unhold := make(chan struct{})
	e.fs.SetSyncHook(func(ev logstore.SyncEvent) {
		if !ev.Done && holding.Load() {
			<-unhold
		}
	})
	holding.Store(true)
	stopHolding := func() {
		if holding.CompareAndSwap(true, false) {
			close(unhold)
		}
	}
	t.Cleanup(stopHolding) // before newEnv's Close, which needs the fsync
	appended := func(before int64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); e.c.log.End() == before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the record was never appended")
			}
		}
	}
	end := e.c.log.End()
	ended := make(chan error, 1)
	go func() { ended <- e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true) }()
	appended(end)
	end = e.c.log.End()
	inited := make(chan error, 1)
	go func() { _, err := e.c.InitProducerID(ctx, "b", time.Minute, NoProducer); inited <- err }()
	appended(end)

	if s := e.stateNow("a"); s != Ongoing {
		t.Fatalf("state while the decision is not durable: %v, want Ongoing", s)
	}
	_, err := e.c.Describe("b")
	wantErr(t, "Describe of an id whose first record is not durable", err, ErrTransactionalIDNotFound)
	if l, _ := e.c.List(ListFilter{States: []State{PrepareCommit, Empty}}); len(l) != 0 {
		t.Fatalf("List shows states that are not durable: %+v", l)
	}
	wantErr(t, "EndTxn abort while the decision is written", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, false), ErrConcurrentTransactions)

	stopHolding()
	wantErr(t, "InitProducerID", <-inited, nil)
	for e.stateNow("a") != PrepareCommit {
		time.Sleep(time.Millisecond)
	}
	wantErr(t, "EndTxn abort once the decision is durable", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, false), ErrInvalidTxnState)
	close(release)
	wantErr(t, "EndTxn", <-ended, nil)
}

func (e *env) stateNow(id string) State {
	info, err := e.c.Describe(id)
	if err != nil {
		e.t.Fatalf("Describe(%s): %v", id, err)
	}
	return info.State
}

// Epoch exhaustion rotates to a fresh producer id; a KIP-360 retry of the
// rotation (the producer never saw the answer) gets the new id again.
func TestEpochExhaustionRotatesTheProducerID(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.init("a")
	// Jump the epoch as if 32765 bumps had happened.
	e.c.mu.Lock()
	s := e.c.txns["a"].s.clone()
	s.epoch = 32765
	if _, err := e.c.writeLocked("a", &s); err != nil {
		t.Fatal(err)
	}
	e.c.mu.Unlock()
	p := e.init("a")
	if p != (ProducerIDEpoch{1000, 32766}) {
		t.Fatalf("bump to the last epoch: got %v", p)
	}
	p, err := e.c.InitProducerID(ctx, "a", time.Minute, ProducerIDEpoch{1000, 32766})
	wantErr(t, "rotate", err, nil)
	if p != (ProducerIDEpoch{1001, 0}) {
		t.Fatalf("rotation: got %v, want a new producer id with epoch 0", p)
	}
	p, err = e.c.InitProducerID(ctx, "a", time.Minute, ProducerIDEpoch{1000, 32766})
	wantErr(t, "retried rotation", err, nil)
	if p != (ProducerIDEpoch{1001, 0}) {
		t.Fatalf("retried rotation: got %v, want the same new producer id", p)
	}
	wantErr(t, "old producer id", e.c.Verify(1000, 32766, "t", 0), ErrProducerFenced)
	// An Ongoing transaction at the last epoch can still be fenced (32767),
	// and the retry then rotates.
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", 1001, 0, []TopicPartition{{"t", 0}}), nil)
	e.c.mu.Lock()
	s = e.c.txns["a"].s.clone()
	s.epoch = 32766
	if _, err := e.c.writeLocked("a", &s); err != nil {
		t.Fatal(err)
	}
	e.c.mu.Unlock()
	_, err = e.c.InitProducerID(ctx, "a", time.Minute, NoProducer)
	wantErr(t, "fence at the last epoch", err, ErrConcurrentTransactions)
	e.waitIdle()
	equal(t, "fence markers", e.rec.take(), []string{"ABORT t/0 pid=1001 epoch=32767"})
	if p := e.init("a"); p != (ProducerIDEpoch{1002, 0}) {
		t.Fatalf("after the fence: got %v, want a new producer id", p)
	}
}

// The log is rewritten as a snapshot when it grows; replaying the snapshot
// gives the same state, across a power loss.
func TestCompactionKeepsState(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CompactRecords = 20; c.SegmentBytes = 4096 })
	ctx := context.Background()
	for i := range 5 {
		id := fmt.Sprint("id-", i)
		for range 20 {
			e.init(id)
		}
	}
	p := e.init("id-0")
	wantErr(t, "add", e.c.AddPartitions(ctx, "id-0", p.ProducerID, p.Epoch, []TopicPartition{{"t", 3}}), nil)
	before, _ := e.c.List(ListFilter{})
	e.c.tick()
	if e.c.log.Start() == 0 {
		t.Fatal("the log was not compacted")
	}
	e.crash()
	after, _ := e.c.List(ListFilter{})
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("state changed across compaction and restart:\n before %v\n after  %v", before, after)
	}
	wantErr(t, "verify", e.c.Verify(p.ProducerID, p.Epoch, "t", 3), nil)
}

// A restart that resumes a prepared transaction on a log already due for
// compaction: the completion's first append kicks the timer loop, which
// must exist by then (it once started after the completions resumed).
func TestRestartResumesCompletionWithCompactionDue(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CompactRecords = 2; c.CompletionWait = time.Millisecond })
	ctx := context.Background()
	for range 5 {
		e.init("a")
	}
	p := e.init("a")
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}}), nil)
	e.rec.setHook(func(ctx context.Context, _ marker) error {
		<-ctx.Done()
		return ctx.Err()
	})
	wantErr(t, "EndTxn", e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true), nil)
	e.rec.setHook(nil)
	e.crash()
	e.waitIdle()
	if s := e.stateNow("a"); s != CompleteCommit {
		t.Fatalf("after the restart: %v, want CompleteCommit", s)
	}
	e.c.tick()
	if e.c.log.Start() == 0 {
		t.Fatal("the log was not compacted")
	}
}

// Close joins every goroutine, including a completion stuck on a marker.
func TestCloseJoinsGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fs := logstore.NewMemFS()
	rec := &recorder{}
	stuck := make(chan struct{}, 1)
	rec.setHook(func(ctx context.Context, _ marker) error {
		select {
		case stuck <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	})
	cfg := DefaultConfig()
	cfg.FS, cfg.Dir, cfg.ProducerIDs, cfg.Markers, cfg.Offsets = fs, testDir, &idSource{}, rec, rec
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := c.InitProducerID(ctx, "a", time.Minute, NoProducer)
	wantErr(t, "init", err, nil)
	wantErr(t, "add", c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}}), nil)
	ended := make(chan error, 1)
	go func() { ended <- c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true) }()
	<-stuck // the decision is durable and its completion waits on a marker
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "EndTxn interrupted by Close", <-ended, nil)
}

// A batch verified with VerifyHold before EndTxn is appended before the
// transaction's markers are written, however late its append comes.
func TestMarkersWaitForVerifiedAppends(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := e.init("a")
	wantErr(t, "add", e.c.AddPartitions(ctx, "a", p.ProducerID, p.Epoch, []TopicPartition{{"t", 0}}), nil)
	release, err := e.c.VerifyHold(p.ProducerID, p.Epoch, "t", 0)
	wantErr(t, "VerifyHold", err, nil)
	ended := make(chan error, 1)
	go func() { ended <- e.c.EndTxn(ctx, "a", p.ProducerID, p.Epoch, true) }()
	for e.stateNow("a") != PrepareCommit {
		time.Sleep(time.Millisecond)
	}
	_, err = e.c.VerifyHold(p.ProducerID, p.Epoch, "t", 0)
	wantErr(t, "VerifyHold once the decision is made", err, ErrInvalidTxnState)
	time.Sleep(20 * time.Millisecond)
	equal(t, "markers while a verified append is outstanding", e.rec.take(), nil)
	release()
	release() // a second call is harmless
	wantErr(t, "EndTxn", <-ended, nil)
	equal(t, "markers after the append", e.rec.take(), []string{"COMMIT t/0 pid=1000 epoch=0"})
}
