package idempotency_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/pgstore"
	"github.com/idem-dev/idem/idempotency/sqlitestore"
)

func TestSkipSchemaLeavesTheTableToTheApplication(t *testing.T) {
	ctx := context.Background()
	cfg := idempotency.StoreConfig{Table: "api_keys", SkipSchema: true}
	k := idempotency.Key{Scope: "s", Key: "k"}
	now := time.Now()
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "app.db")
		s, err := sqlitestore.Open(ctx, path, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Claim(ctx, k, "fp", now, time.Minute, time.Hour); err == nil {
			t.Fatal("Claim without the table succeeded: SkipSchema created it")
		}
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, stmt := range sqlitestore.Schema(cfg.Table) {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		if c, err := s.Claim(ctx, k, "fp", now, time.Minute, time.Hour); err != nil || c.Status != idempotency.Claimed {
			t.Fatalf("Claim = %+v, %v", c, err)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		pool, _ := pgSchema(t)
		s, err := pgstore.New(ctx, pool, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Claim(ctx, k, "fp", now, time.Minute, time.Hour); err == nil {
			t.Fatal("Claim without the table succeeded: SkipSchema created it")
		}
		for _, stmt := range pgstore.Schema(cfg.Table) {
			if _, err := pool.Exec(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		if c, err := s.Claim(ctx, k, "fp", now, time.Minute, time.Hour); err != nil || c.Status != idempotency.Claimed {
			t.Fatalf("Claim = %+v, %v", c, err)
		}
	})
}

// A keys table made by the version that kept times as bigint microseconds
// is converted to timestamptz, its rows kept.
func TestPostgresConvertsBigintTimesToTimestamptz(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgSchema(t)
	_, err := pool.Exec(ctx, `CREATE TABLE idem_keys (
		scope TEXT NOT NULL, idem_key TEXT NOT NULL, fingerprint TEXT NOT NULL, token TEXT NOT NULL,
		done INTEGER NOT NULL, locked_until BIGINT NOT NULL, status INTEGER NOT NULL, header TEXT NOT NULL,
		body BYTEA, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (scope, idem_key))`)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	_, err = pool.Exec(ctx, `INSERT INTO idem_keys VALUES ('s', 'k', 'fp', '', 1, 0, 201, '{"Location":["/o/1"]}', 'body', $1, $2)`,
		created.UnixMicro(), created.Add(24*time.Hour).UnixMicro())
	if err != nil {
		t.Fatal(err)
	}
	s, err := pgstore.New(ctx, pool, idempotency.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var typ string
	if err := pool.QueryRow(ctx, `SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema()
		AND table_name = 'idem_keys' AND column_name = 'created_at'`).Scan(&typ); err != nil || typ != "timestamp with time zone" {
		t.Fatalf("created_at is %q (%v), want timestamptz", typ, err)
	}
	e, err := s.Get(ctx, idempotency.Key{Scope: "s", Key: "k"}, created.Add(time.Hour))
	if err != nil || !e.Done || string(e.Response.Body) != "body" || !e.CreatedAt.Equal(created) || !e.ExpiresAt.Equal(created.Add(24*time.Hour)) {
		t.Fatalf("converted row: %+v, %v", e, err)
	}
	if _, err := pgstore.New(ctx, pool, idempotency.StoreConfig{}); err != nil {
		t.Fatalf("opening a converted table again: %v", err)
	}
}
