package dedupe_test

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/dedupeprom"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A production consumer on PostgreSQL: offsets, processed ids and the
// handler's rows in one transaction; bounded retries with backoff, then a
// dead-letter topic; Prometheus counters; expired ids cleaned up hourly.
//
//	go get github.com/idem-dev/idem/dedupe github.com/idem-dev/idem/dedupe/pgstore
func ExampleNewConsumer() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, dedupe.Config{Table: "billing_processed"})
	if err != nil {
		log.Fatal(err)
	}
	registry := prometheus.NewRegistry() // served on your /metrics
	metrics, err := dedupeprom.New(registry)
	if err != nil {
		log.Fatal(err)
	}
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[pgx.Tx]{
		Store:           store,
		Group:           "billing",
		Topics:          []string{"charges"},
		ClientOpts:      []kgo.Opt{kgo.SeedBrokers("127.0.0.1:9092")},
		Retry:           dedupe.RetryPolicy{MaxAttempts: 5, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 30 * time.Second},
		DeadLetterTopic: "charges-dlq",
		OnEvent:         metrics.Observe,
		Handler: func(ctx context.Context, tx pgx.Tx, r *kgo.Record) error {
			var charge struct{ Customer string }
			if err := json.Unmarshal(r.Value, &charge); err != nil {
				return dedupe.Permanent(err) // dead-lettered at once, never retried
			}
			id, _ := dedupe.EventIDFrom(ctx) // the id this delivery claimed
			_, err := tx.Exec(ctx, `INSERT INTO charges (event_id, customer) VALUES ($1, $2)`, id, charge.Customer)
			return err
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	go dedupe.RunCleanup(ctx, store, time.Hour, func(err error) { log.Print(err) })
	if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}
