package dedupe_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/jackc/pgx/v5"
)

// BenchmarkProcess measures Process on both stores with 1 and 16 concurrent
// workers, each event a new id whose handler inserts one row. "baseline" is
// the same consumer writing the same row in its own transaction without
// dedupe, so the cost of the claim is the difference between the two.
//
//	go test -run '^$' -bench Process -benchtime 2000x ./dedupe
func BenchmarkProcess(b *testing.B) {
	ctx := context.Background()
	for _, store := range []string{"sqlite", "postgres"} {
		for _, workers := range []int{1, 16} {
			for _, mode := range []string{"dedupe", "baseline"} {
				b.Run(fmt.Sprintf("%s/workers=%d/%s", store, workers, mode), func(b *testing.B) {
					run := benchTarget(b, store, mode)
					var next atomic.Int64
					lat := make([][]time.Duration, workers)
					b.ResetTimer()
					start := time.Now()
					var wg sync.WaitGroup
					for w := range workers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								i := next.Add(1)
								if i > int64(b.N) {
									return
								}
								t0 := time.Now()
								if err := run(ctx, fmt.Sprintf("evt-%d", i)); err != nil {
									b.Error(err)
									return
								}
								lat[w] = append(lat[w], time.Since(t0))
							}
						}()
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					all := slices.Concat(lat...)
					slices.Sort(all)
					if len(all) > 0 {
						b.ReportMetric(float64(len(all))/elapsed.Seconds(), "events/s")
						b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
					}
				})
			}
		}
	}
}

// benchTarget returns one event's work for store and mode.
func benchTarget(b *testing.B, store, mode string) func(ctx context.Context, id string) error {
	ctx := context.Background()
	switch store {
	case "sqlite":
		s, err := sqlitestore.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), dedupe.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		if _, err := s.DB().ExecContext(ctx, effectsDDL); err != nil {
			b.Fatal(err)
		}
		insert := func(ctx context.Context, tx *sql.Tx, id string) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, id)
			return err
		}
		if mode == "baseline" {
			return func(ctx context.Context, id string) error {
				tx, err := s.DB().BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				if err := insert(ctx, tx, id); err != nil {
					return err
				}
				return tx.Commit()
			}
		}
		return func(ctx context.Context, id string) error {
			_, err := s.Process(ctx, id, func(ctx context.Context, tx *sql.Tx) error { return insert(ctx, tx, id) })
			return err
		}
	default:
		pool, _ := pgSchema(b)
		s, err := pgstore.New(ctx, pool, dedupe.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, effectsDDL); err != nil {
			b.Fatal(err)
		}
		insert := func(ctx context.Context, tx pgx.Tx, id string) error {
			_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, id)
			return err
		}
		if mode == "baseline" {
			return func(ctx context.Context, id string) error {
				return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return insert(ctx, tx, id) })
			}
		}
		return func(ctx context.Context, id string) error {
			_, err := s.Process(ctx, id, func(ctx context.Context, tx pgx.Tx) error { return insert(ctx, tx, id) })
			return err
		}
	}
}
