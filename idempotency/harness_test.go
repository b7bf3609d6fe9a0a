package idempotency_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/pgstore"
	"github.com/idem-dev/idem/idempotency/sqlitestore"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/pgkit"
	"github.com/jackc/pgx/v5/pgxpool"
)

// storeUnderTest lets each specification run against both real databases.
type storeUnderTest struct {
	name  string
	store idempotency.Store
	// insertOrder writes an order row through the request's transaction.
	insertOrder func(ctx context.Context, id string) error
	// orders counts committed order rows with id ("" = all).
	orders func(t testing.TB, id string) int
	// reopen opens a new store on the same database, as a restarted server would.
	reopen func(t testing.TB) idempotency.Store
	// dsn opens the same database from another process.
	dsn string
}

const ordersDDL = `CREATE TABLE IF NOT EXISTS orders (id TEXT NOT NULL)`

func eachStore(t *testing.T, fn func(t *testing.T, s *storeUnderTest)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, newSQLiteUnderTest(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, newPostgresUnderTest(t)) })
}

func newSQLiteUnderTest(t testing.TB) *storeUnderTest {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := sqlitestore.Open(ctx, path, idempotency.StoreConfig{CleanupBatch: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.DB().ExecContext(ctx, ordersDDL); err != nil {
		t.Fatal(err)
	}
	return &storeUnderTest{
		name:  "sqlite",
		store: s,
		dsn:   path,
		reopen: func(t testing.TB) idempotency.Store {
			s2, err := sqlitestore.Open(context.Background(), path, idempotency.StoreConfig{CleanupBatch: 3})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s2.Close() })
			return s2
		},
		insertOrder: func(ctx context.Context, id string) error {
			tx, err := sqlitestore.Tx(ctx)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES ($1)`, id)
			return err
		},
		orders: func(t testing.TB, id string) int {
			var n int
			if err := s.DB().QueryRowContext(context.Background(), `SELECT count(*) FROM orders WHERE $1 = '' OR id = $1`, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		},
	}
}

func newPostgresUnderTest(t testing.TB) *storeUnderTest {
	ctx := context.Background()
	pool, dsn := pgSchema(t)
	s, err := pgstore.New(ctx, pool, idempotency.StoreConfig{CleanupBatch: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, ordersDDL); err != nil {
		t.Fatal(err)
	}
	return &storeUnderTest{
		name:  "postgres",
		store: s,
		dsn:   dsn,
		reopen: func(t testing.TB) idempotency.Store {
			s2, err := pgstore.New(context.Background(), pool, idempotency.StoreConfig{CleanupBatch: 3})
			if err != nil {
				t.Fatal(err)
			}
			return s2
		},
		insertOrder: func(ctx context.Context, id string) error {
			tx, err := pgstore.Tx(ctx)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO orders (id) VALUES ($1)`, id)
			return err
		},
		orders: func(t testing.TB, id string) int {
			var n int
			if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM orders WHERE $1 = '' OR id = $1`, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		},
	}
}

// fakeClock is the tests' clock; the alias keeps the specs' name for it.
type fakeClock = testkit.Clock

func newFakeClock() *fakeClock {
	return testkit.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// pgSchema gives the test its own PostgreSQL schema (see pgkit.Schema).
func pgSchema(t testing.TB) (*pgxpool.Pool, string) { return pgkit.Schema(t, "idempotency_test") }
