package dedupe_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/idem-dev/idem/dedupe"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Process runs the handler once per event id; its writes and the processed
// mark commit together.
func ExampleSQLite_Process() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "dedupe-example")
	defer os.RemoveAll(dir)
	store, err := dedupe.OpenSQLite(ctx, filepath.Join(dir, "billing.db"), dedupe.Config{Consumer: "billing-1"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	store.DB().ExecContext(ctx, `CREATE TABLE charges (event_id TEXT PRIMARY KEY, cents INTEGER)`)

	charge := func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO charges VALUES ('evt-1', 1200)`)
		return err
	}
	for range 3 { // the broker delivered the event three times
		res, err := store.Process(ctx, "evt-1", charge)
		if err != nil {
			log.Fatal(err) // the handler's error: nothing was committed, retry later
		}
		fmt.Println(res.Status)
	}
	rec, _ := store.Lookup(ctx, "evt-1")
	fmt.Printf("processed by %s, %d duplicates suppressed\n", rec.Consumer, rec.Duplicates)
	// Output:
	// processed
	// duplicate
	// duplicate
	// processed by billing-1, 2 duplicates suppressed
}

// A consumer that keeps its offsets in PostgreSQL, next to the rows its
// handler writes.
func ExampleNewConsumer() {
	ctx := context.Background()
	var store *dedupe.Postgres // from dedupe.NewPostgres(ctx, pool, dedupe.Config{})
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
