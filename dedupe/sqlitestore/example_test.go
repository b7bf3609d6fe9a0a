package sqlitestore_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
)

// Process runs the handler once per event id; its writes and the processed
// mark commit together.
func ExampleStore_Process() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "dedupe-example")
	defer os.RemoveAll(dir)
	store, err := sqlitestore.Open(ctx, filepath.Join(dir, "billing.db"), dedupe.Config{Consumer: "billing-1"})
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
