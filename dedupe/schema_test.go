package dedupe_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/jackc/pgx/v5"
)

// With SkipSchema the store creates nothing; the exported Schema is what
// the application's migrations apply.
func TestSkipSchemaLeavesTheTablesToTheApplication(t *testing.T) {
	ctx := context.Background()
	cfg := dedupe.Config{Table: "billing_processed", SkipSchema: true}
	noop := func(context.Context, *sql.Tx) error { return nil }
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "app.db")
		if s, err := sqlitestore.Open(ctx, path, cfg); err == nil {
			s.Close()
			t.Fatal("Open with SkipSchema on an empty database succeeded: it created the tables or checked nothing")
		}
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range sqlitestore.Schema(cfg.Table) {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
		s, err := sqlitestore.Open(ctx, path, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if res, err := s.Process(ctx, "e1", noop); err != nil || res.Status != dedupe.Processed {
			t.Fatalf("Process = %+v, %v", res, err)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		pool, _ := pgSchema(t)
		s, err := pgstore.New(ctx, pool, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Process(ctx, "e1", func(context.Context, pgx.Tx) error { return nil }); err == nil {
			t.Fatal("Process without the tables succeeded: SkipSchema created them")
		}
		for _, stmt := range pgstore.Schema(cfg.Table) {
			if _, err := pool.Exec(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		if res, err := s.Process(ctx, "e1", func(context.Context, pgx.Tx) error { return nil }); err != nil || res.Status != dedupe.Processed {
			t.Fatalf("Process = %+v, %v", res, err)
		}
	})
}
