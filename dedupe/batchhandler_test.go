package dedupe_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConsumerBatchHandlerGetsTheClaimedRecordsOfABatchAtOnce: with a
// BatchHandler, each batch's claimed records come in one call (producer
// resends are not among them); a batch whose handler fails, or panics,
// rolls back and its records are settled one by one through Handler. Every
// event is applied once either way.
func TestConsumerBatchHandlerGetsTheClaimedRecordsOfABatchAtOnce(t *testing.T) {
	b := startBroker(t, "batched-sqlite", "batched-postgres")
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		topic, group := "batched-"+s.name, "batched-"+s.name
		events := ids("evt", 30)
		cl := b.Client(t)
		producePayments(t, cl, topic, events...)
		producePayments(t, cl, topic, events[:3]...) // resends
		var (
			mu       sync.Mutex
			calls    atomic.Int32
			batched  []string
			single   []string
			settled  atomic.Int64
			failures int
		)
		write := func(ctx context.Context, exec func(id string) error, rs []*kgo.Record, ids []string) error {
			calls.Add(1)
			mu.Lock()
			failures++
			n := failures
			mu.Unlock()
			switch n {
			case 1:
				return errors.New("the first batch fails")
			case 2:
				panic("the second batch panics")
			}
			for i, r := range rs {
				if ids[i] != dedupe.EventID(r, dedupe.DefaultKeyHeader) {
					t.Errorf("id %s for record %s", ids[i], dedupe.EventID(r, dedupe.DefaultKeyHeader))
				}
				if err := exec(ids[i]); err != nil {
					return err
				}
			}
			mu.Lock()
			batched = append(batched, ids...)
			mu.Unlock()
			return nil
		}
		singleWrite := func(ctx context.Context, exec func(id string) error, r *kgo.Record) error {
			id, _ := dedupe.EventIDFrom(ctx)
			mu.Lock()
			single = append(single, id)
			mu.Unlock()
			return exec(id)
		}
		onResult := func(*kgo.Record, dedupe.Result) { settled.Add(1) }
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		switch st := s.raw.(type) {
		case *sqlitestore.Store:
			c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[*sql.Tx]{Store: st, Group: group, Topics: []string{topic},
				ClientOpts: groupOpts(b.Addr()), MaxBatch: 100, OnResult: onResult, Logger: quietLogger,
				Retry: dedupe.RetryPolicy{InitialBackoff: 1e6, MaxBackoff: 1e6},
				Handler: func(ctx context.Context, tx *sql.Tx, r *kgo.Record) error {
					return singleWrite(ctx, func(id string) error {
						_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, id)
						return err
					}, r)
				},
				BatchHandler: func(ctx context.Context, tx *sql.Tx, rs []*kgo.Record, ids []string) error {
					return write(ctx, func(id string) error {
						_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, id)
						return err
					}, rs, ids)
				}})
			if err != nil {
				t.Fatal(err)
			}
			go func() { done <- c.Run(ctx) }()
		case *pgstore.Store:
			c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[pgx.Tx]{Store: st, Group: group, Topics: []string{topic},
				ClientOpts: groupOpts(b.Addr()), MaxBatch: 100, OnResult: onResult, Logger: quietLogger,
				Retry: dedupe.RetryPolicy{InitialBackoff: 1e6, MaxBackoff: 1e6},
				Handler: func(ctx context.Context, tx pgx.Tx, r *kgo.Record) error {
					return singleWrite(ctx, func(id string) error {
						_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, id)
						return err
					}, r)
				},
				BatchHandler: func(ctx context.Context, tx pgx.Tx, rs []*kgo.Record, ids []string) error {
					return write(ctx, func(id string) error {
						_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, id)
						return err
					}, rs, ids)
				}})
			if err != nil {
				t.Fatal(err)
			}
			go func() { done <- c.Run(ctx) }()
		}
		for settled.Load() < int64(len(events)+3) {
			select {
			case err := <-done:
				t.Fatalf("consumer stopped: %v", err)
			default:
			}
			if s.committedRecords(t, group) >= int64(len(events)+3) {
				break
			}
			testSleep()
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for _, id := range events {
			if n := s.effects(t, id); n != 1 {
				t.Errorf("%s applied %d times", id, n)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		all := append(slices.Clone(batched), single...)
		slices.Sort(all)
		if !slices.Equal(all, sortedCopy(events)) {
			t.Errorf("handled %v, want each event once", all)
		}
		if len(single) == 0 || calls.Load() < 2 {
			t.Errorf("the failing and panicking batches were not settled one by one: %d batch calls, %d single", calls.Load(), len(single))
		}
	})
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func testSleep() { time.Sleep(20 * time.Millisecond) }
