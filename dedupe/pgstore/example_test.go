package pgstore_test

import (
	"context"
	"log"
	"os"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Process runs the handler once per event id; the charge row and the
// processed mark commit in one PostgreSQL transaction.
func ExampleStore_Process() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, dedupe.Config{Consumer: "billing-1"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := store.Process(ctx, "evt-1", func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO charges (event_id, cents) VALUES ('evt-1', 1200)`)
		return err
	})
	if err != nil {
		log.Fatal(err) // the handler's error: nothing was committed, retry later
	}
	log.Println(res.Status) // processed, or duplicate on a redelivery
}

// With Config.SkipSchema the store creates nothing; put Schema's statements
// in your migrations instead.
func ExampleSchema() {
	for _, stmt := range pgstore.Schema("billing_processed") {
		_ = stmt // e.g. write them to migrations/0001_dedupe.up.sql
	}
}
