package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
)

func addEffect(ctx context.Context, w effectWriter, id string) error { return w.addEffect(ctx, id) }

func TestFirstDeliveryCommitsHandlerWritesWithTheClaim(t *testing.T) {
	eachStore(t, dedupe.Config{Consumer: "billing-1"}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		res, err := s.process(ctx, "evt-1", func(ctx context.Context, w effectWriter) error { return addEffect(ctx, w, "evt-1") })
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != dedupe.Processed {
			t.Fatalf("status = %v, want processed", res.Status)
		}
		if n := s.effects(t, "evt-1"); n != 1 {
			t.Fatalf("effects = %d, want 1", n)
		}
		rec, err := s.lookup(ctx, "evt-1")
		if err != nil {
			t.Fatal(err)
		}
		want := dedupe.Record{EventID: "evt-1", Consumer: "billing-1", Outcome: "processed",
			ProcessedAt: s.clock.Now(), ExpiresAt: s.clock.Now().Add(7 * 24 * time.Hour)}
		if rec != want {
			t.Fatalf("audit record\n got %+v\nwant %+v", rec, want)
		}
		if res.Record != want {
			t.Fatalf("result record\n got %+v\nwant %+v", res.Record, want)
		}
	})
}

func TestRedeliveryRunsNothingAndIsCountedInTheAuditTrail(t *testing.T) {
	eachStore(t, dedupe.Config{Consumer: "billing-1"}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		first := s.clock.Now()
		runs := 0
		h := func(ctx context.Context, w effectWriter) error { runs++; return addEffect(ctx, w, "evt-1") }
		if _, err := s.process(ctx, "evt-1", h); err != nil {
			t.Fatal(err)
		}
		var res dedupe.Result
		for range 3 {
			s.clock.Advance(time.Minute)
			var err error
			if res, err = s.process(ctx, "evt-1", h); err != nil {
				t.Fatal(err)
			}
			if res.Status != dedupe.Duplicate {
				t.Fatalf("redelivery status = %v, want duplicate", res.Status)
			}
		}
		if runs != 1 || s.effects(t, "evt-1") != 1 {
			t.Fatalf("handler ran %d times, %d effects; want 1 and 1", runs, s.effects(t, "evt-1"))
		}
		rec, err := s.lookup(ctx, "evt-1")
		if err != nil {
			t.Fatal(err)
		}
		if rec.Duplicates != 3 || !rec.LastDuplicateAt.Equal(s.clock.Now()) || !rec.ProcessedAt.Equal(first) || rec.Consumer != "billing-1" {
			t.Fatalf("audit = %+v; want 3 duplicates, last at %v, first processed at %v by billing-1", rec, s.clock.Now(), first)
		}
		if res.Record != rec {
			t.Fatalf("duplicate result carries %+v, lookup says %+v", res.Record, rec)
		}
	})
}

func TestHandlerErrorRollsBackWritesAndClaimSoTheNextDeliveryRuns(t *testing.T) {
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		boom := errors.New("gateway timeout")
		_, err := s.process(ctx, "evt-1", func(ctx context.Context, w effectWriter) error {
			if err := addEffect(ctx, w, "evt-1"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want the handler's error", err)
		}
		if n := s.effects(t, ""); n != 0 {
			t.Fatalf("a failed handler left %d effect rows", n)
		}
		if _, err := s.lookup(ctx, "evt-1"); !errors.Is(err, dedupe.ErrNotFound) {
			t.Fatalf("lookup after failure: %v, want ErrNotFound", err)
		}
		res, err := s.process(ctx, "evt-1", func(ctx context.Context, w effectWriter) error { return addEffect(ctx, w, "evt-1") })
		if err != nil || res.Status != dedupe.Processed || s.effects(t, "evt-1") != 1 {
			t.Fatalf("retry: %v %v effects=%d; want processed once", res.Status, err, s.effects(t, "evt-1"))
		}
	})
}

func TestPermanentErrorIsRecordedAsRejectedAndSuppressesRedeliveries(t *testing.T) {
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		bad := errors.New("amount must be positive")
		res, err := s.process(ctx, "evt-1", func(ctx context.Context, w effectWriter) error {
			if err := addEffect(ctx, w, "evt-1"); err != nil {
				return err
			}
			return dedupe.Permanent(bad)
		})
		if !errors.Is(err, bad) || res.Status != dedupe.Rejected {
			t.Fatalf("got %v, %v; want Rejected and the handler's error", res.Status, err)
		}
		if n := s.effects(t, ""); n != 0 {
			t.Fatalf("rejected event left %d effect rows", n)
		}
		rec, err := s.lookup(ctx, "evt-1")
		if err != nil || rec.Outcome != "rejected: amount must be positive" {
			t.Fatalf("audit = %+v, %v; want outcome rejected", rec, err)
		}
		res, err = s.process(ctx, "evt-1", func(ctx context.Context, w effectWriter) error {
			t.Error("handler ran for a rejected event")
			return nil
		})
		if err != nil || res.Status != dedupe.Duplicate || res.Record.Outcome != rec.Outcome {
			t.Fatalf("redelivery: %+v, %v; want duplicate of the rejection", res, err)
		}
	})
}

func TestHandlerPanicRollsBack(t *testing.T) {
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("panic was swallowed")
				}
			}()
			s.process(ctx, "evt-1", func(ctx context.Context, w effectWriter) error {
				addEffect(ctx, w, "evt-1")
				panic("handler bug")
			})
		}()
		res, err := s.process(ctx, "evt-1", func(ctx context.Context, w effectWriter) error { return addEffect(ctx, w, "evt-1") })
		if err != nil || res.Status != dedupe.Processed || s.effects(t, "evt-1") != 1 {
			t.Fatalf("after panic: %v %v effects=%d; want processed once", res.Status, err, s.effects(t, "evt-1"))
		}
	})
}

func TestEmptyEventIDIsRefused(t *testing.T) {
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		_, err := s.process(context.Background(), "", func(context.Context, effectWriter) error { return nil })
		if !errors.Is(err, dedupe.ErrEmptyEventID) {
			t.Fatalf("err = %v, want ErrEmptyEventID", err)
		}
	})
}

// Many goroutines deliver the same ids at once, as a rebalance storm or a
// redelivery after a lost ack would. Exactly one handler per id commits.
func TestConcurrentDeliveriesCommitExactlyOncePerID(t *testing.T) {
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		const workers, ids = 8, 40
		var processed, duplicates atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range ids {
					id := fmt.Sprintf("evt-%d", (i+w)%ids) // workers start at different ids
					res, err := s.process(ctx, id, func(ctx context.Context, ew effectWriter) error {
						time.Sleep(100 * time.Microsecond) // widen the window between claim and commit
						return addEffect(ctx, ew, id)
					})
					if err != nil {
						errs <- err
						return
					}
					switch res.Status {
					case dedupe.Processed:
						processed.Add(1)
					case dedupe.Duplicate:
						duplicates.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if processed.Load() != ids || duplicates.Load() != ids*(workers-1) {
			t.Fatalf("processed=%d duplicates=%d; want %d and %d", processed.Load(), duplicates.Load(), ids, ids*(workers-1))
		}
		for i := range ids {
			id := fmt.Sprintf("evt-%d", i)
			if n := s.effects(t, id); n != 1 {
				t.Errorf("%s applied %d times", id, n)
			}
			if rec, err := s.lookup(ctx, id); err != nil || rec.Duplicates != workers-1 {
				t.Errorf("%s audit %+v %v; want %d duplicates", id, rec, err, workers-1)
			}
		}
	})
}

func TestAfterRetentionARedeliveryIsNew(t *testing.T) {
	eachStore(t, dedupe.Config{Retention: time.Hour}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		h := func(ctx context.Context, w effectWriter) error { return addEffect(ctx, w, "evt-1") }
		s.process(ctx, "evt-1", h)
		s.clock.Advance(time.Hour - time.Microsecond)
		if res, err := s.process(ctx, "evt-1", h); err != nil || res.Status != dedupe.Duplicate {
			t.Fatalf("just before expiry: %v %v, want duplicate", res.Status, err)
		}
		s.clock.Advance(time.Microsecond)
		if _, err := s.lookup(ctx, "evt-1"); !errors.Is(err, dedupe.ErrNotFound) {
			t.Fatalf("lookup at expiry: %v, want ErrNotFound", err)
		}
		res, err := s.process(ctx, "evt-1", h)
		if err != nil || res.Status != dedupe.Processed {
			t.Fatalf("at expiry: %v %v, want processed", res.Status, err)
		}
		if rec, _ := s.lookup(ctx, "evt-1"); rec.Duplicates != 0 || !rec.ProcessedAt.Equal(s.clock.Now()) {
			t.Fatalf("revived record %+v should start a fresh audit", rec)
		}
	})
}

func TestRetentionForeverNeverExpires(t *testing.T) {
	eachStore(t, dedupe.Config{Retention: -1}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		s.process(ctx, "evt-1", func(context.Context, effectWriter) error { return nil })
		s.clock.Advance(100 * 365 * 24 * time.Hour)
		if n, err := s.cleanup(ctx); err != nil || n != 0 {
			t.Fatalf("cleanup deleted %d (%v), want 0", n, err)
		}
		rec, err := s.lookup(ctx, "evt-1")
		if err != nil || !rec.ExpiresAt.IsZero() {
			t.Fatalf("lookup = %+v, %v; want a record with zero ExpiresAt", rec, err)
		}
	})
}

func TestCleanupDeletesOnlyExpiredRecordsInBatches(t *testing.T) {
	eachStore(t, dedupe.Config{Retention: time.Hour, CleanupBatch: 3}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		noop := func(context.Context, effectWriter) error { return nil }
		for i := range 10 {
			s.process(ctx, fmt.Sprintf("old-%d", i), noop)
		}
		s.clock.Advance(30 * time.Minute)
		for i := range 4 {
			s.process(ctx, fmt.Sprintf("new-%d", i), noop)
		}
		s.clock.Advance(30 * time.Minute)
		n, err := s.cleanup(ctx)
		if err != nil || n != 10 {
			t.Fatalf("cleanup = %d, %v; want the 10 expired records", n, err)
		}
		for i := range 4 {
			if _, err := s.lookup(ctx, fmt.Sprintf("new-%d", i)); err != nil {
				t.Fatalf("live record new-%d: %v", i, err)
			}
		}
		if n, err := s.cleanup(ctx); err != nil || n != 0 {
			t.Fatalf("second cleanup = %d, %v; want 0", n, err)
		}
	})
}

func TestPostgresLockTimeoutReportsInProgress(t *testing.T) {
	s := newPostgresUnderTest(t, dedupe.Config{LockTimeout: 100 * time.Millisecond})
	ctx := context.Background()
	inHandler, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := s.process(ctx, "evt-1", func(ctx context.Context, w effectWriter) error {
			close(inHandler)
			<-release
			return addEffect(ctx, w, "evt-1")
		})
		done <- err
	}()
	<-inHandler
	_, err := s.process(ctx, "evt-1", func(context.Context, effectWriter) error {
		t.Error("second delivery ran while the first held the claim")
		return nil
	})
	close(release)
	if !errors.Is(err, dedupe.ErrInProgress) {
		t.Fatalf("err = %v, want ErrInProgress", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if res, err := s.process(ctx, "evt-1", func(context.Context, effectWriter) error { return nil }); err != nil || res.Status != dedupe.Duplicate {
		t.Fatalf("after the first committed: %v %v, want duplicate", res.Status, err)
	}
}

func TestInvalidTableNameIsRefused(t *testing.T) {
	_, err := sqlitestore.Open(context.Background(), t.TempDir()+"/x.db", dedupe.Config{Table: "x; DROP TABLE y"})
	if err == nil || !strings.Contains(err.Error(), "invalid table name") {
		t.Fatalf("err = %v, want invalid table name", err)
	}
}

// Two stores on one SQLite file are two writers, as two consumer processes
// would be: BEGIN IMMEDIATE and busy_timeout make them take turns, and each
// id still commits once.
func TestTwoSQLiteWritersOnOneFileCommitOncePerID(t *testing.T) {
	path := t.TempDir() + "/shared.db"
	a := openSQLiteUnderTest(t, path, dedupe.Config{Consumer: "a"})
	b := openSQLiteUnderTest(t, path, dedupe.Config{Consumer: "b"})
	ctx := context.Background()
	const ids = 60
	var wg sync.WaitGroup
	var processed atomic.Int64
	for w, s := range []*storeUnderTest{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				id := fmt.Sprintf("evt-%d", (i+w*7)%ids)
				res, err := s.process(ctx, id, func(ctx context.Context, ew effectWriter) error { return addEffect(ctx, ew, id) })
				if err != nil {
					t.Error(err)
					return
				}
				if res.Status == dedupe.Processed {
					processed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if processed.Load() != ids {
		t.Fatalf("%d deliveries processed, want %d", processed.Load(), ids)
	}
	for i := range ids {
		if n := a.effects(t, fmt.Sprintf("evt-%d", i)); n != 1 {
			t.Errorf("evt-%d applied %d times", i, n)
		}
	}
}
