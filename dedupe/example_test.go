package dedupe_test

import (
	"context"
	"encoding/json"
	"log"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A consumer that keeps its offsets in PostgreSQL, next to the rows its
// handler writes.
func ExampleNewConsumer() {
	ctx := context.Background()
	var store *pgstore.Store // from pgstore.New(ctx, pool, dedupe.Config{})
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[pgx.Tx]{
		Store:      store,
		Group:      "billing",
		Topics:     []string{"charges"},
		ClientOpts: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:9092")},
		MaxBatch:   100,
		Handler: func(ctx context.Context, tx pgx.Tx, r *kgo.Record) error {
			var charge struct{ Customer string }
			if err := json.Unmarshal(r.Value, &charge); err != nil {
				return dedupe.Permanent(err) // recorded as rejected, never retried
			}
			_, err := tx.Exec(ctx, `INSERT INTO charges (event_id, customer) VALUES ($1, $2)`,
				dedupe.EventID(r, dedupe.DefaultKeyHeader), charge.Customer)
			return err
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = c.Run // c.Run(ctx) consumes until ctx is done
	_ = ctx
}
