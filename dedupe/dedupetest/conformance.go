// Package dedupetest is a conformance suite for dedupe.OffsetStore
// implementations, in the manner of testing/fstest: a third-party store
// runs it from its own tests,
//
//	func TestConformance(t *testing.T) {
//		dedupetest.Run(t, dedupetest.Harness[*sql.Tx]{
//			New:   func(t *testing.T, cfg dedupe.Config) dedupe.OffsetStore[*sql.Tx] { return openEmpty(t, cfg) },
//			Write: func(ctx context.Context, tx *sql.Tx, id string) error { … insert a row for id … },
//			Count: func(t *testing.T, id string) int { … committed rows for id … },
//		})
//	}
//
// and passes when it keeps the contract the Consumer relies on. The
// toolkit's own stores run it too.
package dedupetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
)

// Harness adapts a store to the suite.
type Harness[Tx any] struct {
	// New returns a store on an empty database, configured with cfg (the
	// suite sets Now, Retention and Consumer). It is called once per
	// subtest; the effects table Write writes to must exist.
	New func(t *testing.T, cfg dedupe.Config) dedupe.OffsetStore[Tx]
	// Write inserts one effect row for id through tx.
	Write func(ctx context.Context, tx Tx, id string) error
	// Count returns the committed effect rows for id of the store New
	// returned last.
	Count func(t *testing.T, id string) int
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Run runs the suite.
func Run[Tx any](t *testing.T, h Harness[Tx]) {
	ctx := context.Background()
	type env struct {
		s     dedupe.OffsetStore[Tx]
		clock *clock
	}
	open := func(t *testing.T) env {
		c := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		s := h.New(t, dedupe.Config{Now: c.Now, Retention: time.Hour, Consumer: "conformance", CleanupBatch: 2})
		return env{s: s, clock: c}
	}
	write := func(id string) dedupe.Handler[Tx] {
		return func(ctx context.Context, tx Tx) error { return h.Write(ctx, tx, id) }
	}
	process := func(t *testing.T, s dedupe.OffsetStore[Tx], id string, hd dedupe.Handler[Tx], want dedupe.Status) dedupe.Result {
		t.Helper()
		res, err := s.Process(ctx, id, hd)
		if want == dedupe.Rejected {
			if !dedupe.IsPermanent(err) {
				t.Fatalf("Process(%s) error %v, want the Permanent error", id, err)
			}
		} else if err != nil {
			t.Fatalf("Process(%s): %v", id, err)
		}
		if res.Status != want {
			t.Fatalf("Process(%s) = %s, want %s", id, res.Status, want)
		}
		return res
	}
	wantCount := func(t *testing.T, id string, n int) {
		t.Helper()
		if got := h.Count(t, id); got != n {
			t.Fatalf("%s has %d effect rows, want %d", id, got, n)
		}
	}
	pos := func(next int64) dedupe.Position {
		return dedupe.Position{Group: "g", Topic: "t", Partition: 1, Next: next}
	}
	wantOffset := func(t *testing.T, s dedupe.OffsetStore[Tx], next int64) {
		t.Helper()
		got, err := s.LoadOffsets(ctx, "g")
		if err != nil {
			t.Fatal(err)
		}
		if got["t"][1] != next {
			t.Fatalf("stored offset %v, want t/1 at %d", got, next)
		}
	}

	t.Run("first delivery runs the handler, redeliveries are counted duplicates", func(t *testing.T) {
		e := open(t)
		res := process(t, e.s, "e1", write("e1"), dedupe.Processed)
		if res.Record.EventID != "e1" || res.Record.Consumer != "conformance" || res.Record.Outcome != "processed" {
			t.Fatalf("record %+v", res.Record)
		}
		ran := false
		for range 2 {
			process(t, e.s, "e1", func(context.Context, Tx) error { ran = true; return nil }, dedupe.Duplicate)
		}
		if ran {
			t.Fatal("the handler ran for a duplicate")
		}
		wantCount(t, "e1", 1)
		rec, err := e.s.Lookup(ctx, "e1")
		if err != nil || rec.Duplicates != 2 || rec.LastDuplicateAt.IsZero() || !rec.ExpiresAt.Equal(rec.ProcessedAt.Add(time.Hour)) {
			t.Fatalf("Lookup = %+v, %v", rec, err)
		}
		if _, err := e.s.Lookup(ctx, "never"); !errors.Is(err, dedupe.ErrNotFound) {
			t.Fatalf("Lookup of an unknown id: %v, want ErrNotFound", err)
		}
		if _, err := e.s.Process(ctx, "", write("")); !errors.Is(err, dedupe.ErrEmptyEventID) {
			t.Fatalf("empty id: %v, want ErrEmptyEventID", err)
		}
	})
	t.Run("a failing handler rolls back its writes and the claim", func(t *testing.T) {
		e := open(t)
		boom := errors.New("boom")
		_, err := e.s.Process(ctx, "e1", func(ctx context.Context, tx Tx) error {
			if err := h.Write(ctx, tx, "e1"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Process = %v, want the handler's error", err)
		}
		wantCount(t, "e1", 0)
		if _, err := e.s.Lookup(ctx, "e1"); !errors.Is(err, dedupe.ErrNotFound) {
			t.Fatalf("a failed delivery left a record: %v", err)
		}
		process(t, e.s, "e1", write("e1"), dedupe.Processed)
		wantCount(t, "e1", 1)
	})
	t.Run("a permanent error is recorded as rejected and suppresses redeliveries", func(t *testing.T) {
		e := open(t)
		res := process(t, e.s, "e1", func(ctx context.Context, tx Tx) error {
			if err := h.Write(ctx, tx, "e1"); err != nil {
				return err
			}
			return dedupe.Permanent(errors.New("bad event"))
		}, dedupe.Rejected)
		if res.Record.Outcome != "rejected: bad event" {
			t.Fatalf("outcome %q", res.Record.Outcome)
		}
		wantCount(t, "e1", 0)
		process(t, e.s, "e1", write("e1"), dedupe.Duplicate)
		wantCount(t, "e1", 0)
	})
	t.Run("an expired record means a new delivery, and cleanup deletes it", func(t *testing.T) {
		e := open(t)
		process(t, e.s, "old-1", write("old-1"), dedupe.Processed)
		process(t, e.s, "old-2", write("old-2"), dedupe.Processed)
		process(t, e.s, "old-3", write("old-3"), dedupe.Processed)
		e.clock.advance(time.Hour - time.Microsecond)
		process(t, e.s, "old-1", write("old-1"), dedupe.Duplicate)
		e.clock.advance(time.Microsecond)
		if _, err := e.s.Lookup(ctx, "old-2"); !errors.Is(err, dedupe.ErrNotFound) {
			t.Fatalf("Lookup at expiry: %v, want ErrNotFound", err)
		}
		process(t, e.s, "old-1", write("old-1"), dedupe.Processed)
		wantCount(t, "old-1", 2)
		n, err := e.s.Cleanup(ctx, e.clock.Now())
		if err != nil || n != 2 {
			t.Fatalf("Cleanup = %d, %v; want old-2 and old-3", n, err)
		}
		if _, err := e.s.Lookup(ctx, "old-1"); err != nil {
			t.Fatalf("cleanup deleted a live record: %v", err)
		}
	})
	t.Run("ProcessAt stores the offset with every outcome, only forward", func(t *testing.T) {
		e := open(t)
		if _, err := e.s.ProcessAt(ctx, "e1", pos(5), write("e1")); err != nil {
			t.Fatal(err)
		}
		wantOffset(t, e.s, 5)
		if res, err := e.s.ProcessAt(ctx, "e1", pos(6), write("e1")); err != nil || res.Status != dedupe.Duplicate {
			t.Fatalf("duplicate: %+v %v", res, err)
		}
		wantOffset(t, e.s, 6)
		if res, err := e.s.ProcessAt(ctx, "e2", pos(7), func(context.Context, Tx) error { return dedupe.Permanent(errors.New("no")) }); res.Status != dedupe.Rejected || !dedupe.IsPermanent(err) {
			t.Fatalf("rejected: %+v %v", res, err)
		}
		wantOffset(t, e.s, 7)
		if _, err := e.s.ProcessAt(ctx, "e3", pos(8), func(context.Context, Tx) error { return errors.New("retry me") }); err == nil {
			t.Fatal("a failing handler returned no error")
		}
		wantOffset(t, e.s, 7)
		if _, err := e.s.ProcessAt(ctx, "e4", pos(3), write("e4")); err != nil { // a zombie's late commit
			t.Fatal(err)
		}
		wantOffset(t, e.s, 7)
	})
	t.Run("ProcessBatchAt claims a batch in one transaction", func(t *testing.T) {
		e := open(t)
		process(t, e.s, "b2", write("b2"), dedupe.Processed)
		ids := []string{"b1", "b2", "b3", "b1"}
		var ran []int
		res, err := e.s.ProcessBatchAt(ctx, ids, pos(10), func(ctx context.Context, tx Tx, i int) error {
			ran = append(ran, i)
			return h.Write(ctx, tx, ids[i])
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []dedupe.Status{dedupe.Processed, dedupe.Duplicate, dedupe.Processed, dedupe.Duplicate}
		for i := range ids {
			if res[i].Status != want[i] {
				t.Fatalf("results %+v, want %v", res, want)
			}
		}
		if fmt.Sprint(ran) != "[0 2]" {
			t.Fatalf("handlers ran for %v, want [0 2]", ran)
		}
		wantOffset(t, e.s, 10)
		for id, n := range map[string]int{"b1": 1, "b2": 1, "b3": 1} {
			wantCount(t, id, n)
		}
		_, err = e.s.ProcessBatchAt(ctx, []string{"c1", "c2"}, pos(12), func(ctx context.Context, tx Tx, i int) error {
			if i == 1 {
				return errors.New("boom")
			}
			return h.Write(ctx, tx, "c1")
		})
		if err == nil {
			t.Fatal("a failing batch returned no error")
		}
		wantCount(t, "c1", 0)
		wantOffset(t, e.s, 10)
	})
	t.Run("ProcessClaimedAtPositions stores every partition's position with the batch, only forward", func(t *testing.T) {
		e := open(t)
		ps, ok := e.s.(dedupe.PollBatchStore[Tx])
		if !ok {
			t.Skip("the store is not a PollBatchStore")
		}
		at := func(p int32, next int64) dedupe.Position {
			return dedupe.Position{Group: "g", Topic: "t", Partition: p, Next: next}
		}
		wantOffsets := func(t *testing.T, want map[int32]int64) {
			t.Helper()
			got, err := e.s.LoadOffsets(ctx, "g")
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got["t"]) != fmt.Sprint(want) {
				t.Fatalf("stored offsets %v, want %v", got["t"], want)
			}
		}
		run := func(ids []string) func(context.Context, Tx, []int) error {
			return func(ctx context.Context, tx Tx, claimed []int) error {
				for _, i := range claimed {
					if err := h.Write(ctx, tx, ids[i]); err != nil {
						return err
					}
				}
				return nil
			}
		}
		ids := []string{"p1", "p2", "p3"}
		if _, err := ps.ProcessClaimedAtPositions(ctx, ids, []dedupe.Position{at(2, 8), at(0, 5), at(1, 3)}, run(ids)); err != nil {
			t.Fatal(err)
		}
		wantOffsets(t, map[int32]int64{0: 5, 1: 3, 2: 8})
		// A failing batch stores no position; a zombie's older positions
		// (partition 0) do not rewind; a partition named twice ends at the
		// furthest.
		if _, err := ps.ProcessClaimedAtPositions(ctx, []string{"q1"}, []dedupe.Position{at(0, 9), at(1, 9)}, func(context.Context, Tx, []int) error {
			return errors.New("boom")
		}); err == nil {
			t.Fatal("a failing batch returned no error")
		}
		wantOffsets(t, map[int32]int64{0: 5, 1: 3, 2: 8})
		ids = []string{"q1", "p1"}
		res, err := ps.ProcessClaimedAtPositions(ctx, ids, []dedupe.Position{at(0, 4), at(1, 6), at(1, 7), at(3, 1)}, run(ids))
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Status != dedupe.Processed || res[1].Status != dedupe.Duplicate {
			t.Fatalf("results %+v, want processed, duplicate", res)
		}
		wantOffsets(t, map[int32]int64{0: 5, 1: 7, 2: 8, 3: 1})
		for id, n := range map[string]int{"p1": 1, "p2": 1, "p3": 1, "q1": 1} {
			wantCount(t, id, n)
		}
	})
	t.Run("RejectAt records, moves the offset and queues the dead letter atomically", func(t *testing.T) {
		e := open(t)
		dl := &dedupe.DeadLetter{Group: "g", EventID: "d1", Topic: "t-dlq", Key: []byte("k"), Value: []byte{0, 1, 2},
			Headers: []dedupe.Header{{Key: "idempotency-key", Value: []byte("d1")}, {Key: "x", Value: nil}}}
		res, err := e.s.RejectAt(ctx, "d1", pos(4), "dead-lettered: boom", dl)
		if err != nil || res.Status != dedupe.DeadLettered || res.Record.Outcome != "dead-lettered: boom" {
			t.Fatalf("RejectAt = %+v, %v", res, err)
		}
		wantOffset(t, e.s, 4)
		if res, err := e.s.ProcessAt(ctx, "d1", pos(5), write("d1")); err != nil || res.Status != dedupe.Duplicate {
			t.Fatalf("redelivery of a dead-lettered id: %+v %v", res, err)
		}
		if res, err := e.s.RejectAt(ctx, "r1", pos(6), "rejected: no", nil); err != nil || res.Status != dedupe.Rejected {
			t.Fatalf("RejectAt without a dead letter = %+v, %v", res, err)
		}
		// An id processed meanwhile is a duplicate, and queues nothing.
		if res, err := e.s.RejectAt(ctx, "d1", pos(7), "dead-lettered: again", dl); err != nil || res.Status != dedupe.Duplicate {
			t.Fatalf("RejectAt of a processed id = %+v, %v", res, err)
		}
		wantOffset(t, e.s, 7)
		pending, err := e.s.PendingDeadLetters(ctx, "g", 10)
		if err != nil || len(pending) != 1 {
			t.Fatalf("PendingDeadLetters = %+v, %v; want the one dead letter", pending, err)
		}
		got := pending[0]
		if got.ID == 0 || got.Group != "g" || got.EventID != "d1" || got.Topic != "t-dlq" || string(got.Key) != "k" ||
			string(got.Value) != "\x00\x01\x02" || len(got.Headers) != 2 || got.Headers[0].Key != "idempotency-key" || string(got.Headers[0].Value) != "d1" {
			t.Fatalf("dead letter read back as %+v", got)
		}
		if other, _ := e.s.PendingDeadLetters(ctx, "other-group", 10); len(other) != 0 {
			t.Fatalf("another group sees %d dead letters", len(other))
		}
		if err := e.s.DeleteDeadLetter(ctx, got.ID); err != nil {
			t.Fatal(err)
		}
		if pending, _ := e.s.PendingDeadLetters(ctx, "g", 10); len(pending) != 0 {
			t.Fatalf("%d dead letters left after delete", len(pending))
		}
	})
	t.Run("concurrent deliveries of one id: the handler commits once", func(t *testing.T) {
		e := open(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[dedupe.Status]int{}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.s.Process(ctx, "hot", write("hot"))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				statuses[res.Status]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if statuses[dedupe.Processed] != 1 || statuses[dedupe.Duplicate] != 7 {
			t.Fatalf("statuses %v, want 1 processed and 7 duplicates", statuses)
		}
		wantCount(t, "hot", 1)
	})
}
