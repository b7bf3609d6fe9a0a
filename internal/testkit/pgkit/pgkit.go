// Package pgkit gives each test its own PostgreSQL schema on the test
// server, so tests of the PostgreSQL stores (dedupe, idempotency) run side
// by side and leave nothing behind. It is apart from testkit so that only
// the tests that use PostgreSQL link its driver.
package pgkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idem-dev/idem/internal/testkit"
)

// DSNEnv names the environment variable that points the tests at another
// PostgreSQL server.
const DSNEnv = "IDEM_TEST_POSTGRES"

// BaseDSN is the test server: $IDEM_TEST_POSTGRES, or the local server with
// trust authentication, user postgres, database test (as .ci/run sets up).
func BaseDSN() string {
	if v := os.Getenv(DSNEnv); v != "" {
		return v
	}
	return "postgres://postgres@localhost:5432/test?sslmode=disable"
}

// Schema creates a schema unique to this test, named prefix_<random hex>,
// and returns a pool whose search_path points at it and a DSN that does the
// same (for child processes). The schema is dropped when the test ends.
// Without a server the test is Unavailable: skipped locally, failed in CI.
func Schema(t testing.TB, prefix string) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, BaseDSN())
	if err != nil {
		testkit.Unavailable(t, "PostgreSQL not reachable at %s (start it with pg_ctlcluster, or set %s): %v", BaseDSN(), DSNEnv, err)
	}
	defer admin.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	schema := prefix + "_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(BaseDSN(), "?") {
		sep = "&"
	}
	dsn := BaseDSN() + sep + "search_path=" + schema
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		c, err := pgx.Connect(context.Background(), BaseDSN())
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return pool, dsn
}
