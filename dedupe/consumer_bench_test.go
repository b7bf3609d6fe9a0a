package dedupe_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkConsumer measures end to end against an embedded idem broker:
// b.N records are produced first, then one consumer settles them all.
// "dedupe" is dedupe.Consumer (claim + row + offset per transaction);
// "baseline" is the same group consumer writing the same row in its own
// transaction per record and committing offsets to Kafka after each poll.
// The "-batch" variants put up to 100 consecutive records of a partition in
// one transaction (dedupe: MaxBatch 100), the baseline likewise.
//
//	go test -run '^$' -bench Consumer -benchtime 2000x ./dedupe
func BenchmarkConsumer(b *testing.B) {
	for _, store := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"dedupe", "baseline", "dedupe-batch", "baseline-batch"} {
			b.Run(store+"/"+mode, func(b *testing.B) {
				br := brokertest.Run(b, broker.WithTopics("events"), broker.WithProperty("num.partitions", "4"))
				cl := br.Client(b)
				recs := make([]*kgo.Record, 0, b.N)
				for i := range b.N {
					id := fmt.Sprintf("evt-%d", i)
					recs = append(recs, &kgo.Record{Topic: "events", Key: []byte(id), Value: []byte("payload"),
						Headers: []kgo.RecordHeader{{Key: dedupe.DefaultKeyHeader, Value: []byte(id)}}})
				}
				if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
					b.Fatal(err)
				}
				var settled atomic.Int64
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				run := benchConsumer(b, store, mode, br.Addr(), func() {
					if settled.Add(1) == int64(b.N) {
						cancel()
					}
				})
				b.ResetTimer()
				start := time.Now()
				if err := run(ctx); err != nil {
					b.Fatal(err)
				}
				elapsed := time.Since(start)
				b.StopTimer()
				if settled.Load() < int64(b.N) {
					b.Fatalf("settled %d of %d", settled.Load(), b.N)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			})
		}
	}
}

func benchConsumer(b *testing.B, store, mode, addr string, onSettled func()) func(context.Context) error {
	ctx := context.Background()
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.FetchMaxWait(50 * time.Millisecond)}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	onResult := func(*kgo.Record, dedupe.Result) { onSettled() }
	maxBatch := 1
	if strings.HasSuffix(mode, "-batch") {
		maxBatch = 100
	}
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
		insert := func(ctx context.Context, tx *sql.Tx, r *kgo.Record) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, dedupe.EventID(r, dedupe.DefaultKeyHeader))
			return err
		}
		if strings.HasPrefix(mode, "baseline") {
			return baselineConsumer(opts, maxBatch, func(ctx context.Context, rs []*kgo.Record) error {
				tx, err := s.DB().BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				for _, r := range rs {
					if err := insert(ctx, tx, r); err != nil {
						return err
					}
				}
				return tx.Commit()
			}, onSettled)
		}
		c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[*sql.Tx]{Store: s, Group: "bench", Topics: []string{"events"},
			ClientOpts: opts, Handler: insert, OnResult: onResult, Logger: quiet, MaxBatch: maxBatch})
		if err != nil {
			b.Fatal(err)
		}
		return c.Run
	default:
		pool, _ := pgSchema(b)
		s, err := pgstore.New(ctx, pool, dedupe.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, effectsDDL); err != nil {
			b.Fatal(err)
		}
		insert := func(ctx context.Context, tx pgx.Tx, r *kgo.Record) error {
			_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, dedupe.EventID(r, dedupe.DefaultKeyHeader))
			return err
		}
		if strings.HasPrefix(mode, "baseline") {
			return baselineConsumer(opts, maxBatch, func(ctx context.Context, rs []*kgo.Record) error {
				return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					for _, r := range rs {
						if err := insert(ctx, tx, r); err != nil {
							return err
						}
					}
					return nil
				})
			}, onSettled)
		}
		c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[pgx.Tx]{Store: s, Group: "bench", Topics: []string{"events"},
			ClientOpts: opts, Handler: insert, OnResult: onResult, Logger: quiet, MaxBatch: maxBatch})
		if err != nil {
			b.Fatal(err)
		}
		return c.Run
	}
}

// baselineConsumer is the consumer without dedupe: same group client, same
// per-partition parallelism, one transaction per maxBatch records, Kafka
// commits.
func baselineConsumer(opts []kgo.Opt, maxBatch int, write func(context.Context, []*kgo.Record) error, onSettled func()) func(context.Context) error {
	return func(ctx context.Context) error {
		cl, err := kgo.NewClient(append(opts, kgo.ConsumerGroup("bench"), kgo.ConsumeTopics("events"), kgo.DisableAutoCommit())...)
		if err != nil {
			return err
		}
		defer cl.Close()
		for {
			fs := cl.PollRecords(ctx, 500)
			if ctx.Err() != nil {
				return nil
			}
			done := make(chan error, 8)
			n := 0
			fs.EachPartition(func(p kgo.FetchTopicPartition) {
				n++
				go func() {
					for recs := p.Records; len(recs) > 0; {
						chunk := recs[:min(len(recs), maxBatch)]
						recs = recs[len(chunk):]
						if err := write(ctx, chunk); err != nil {
							done <- err
							return
						}
						for range chunk {
							onSettled()
						}
					}
					done <- nil
				}()
			})
			for range n {
				if err := <-done; err != nil && ctx.Err() == nil {
					return err
				}
			}
			if ctx.Err() != nil {
				return nil
			}
			cl.CommitUncommittedOffsets(ctx)
		}
	}
}
