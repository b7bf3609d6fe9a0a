package idempotency_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/pgstore"
	"github.com/idem-dev/idem/idempotency/sqlitestore"
	"github.com/jackc/pgx/v5"
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

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func pgBaseDSN() string {
	if v := os.Getenv("IDEM_TEST_POSTGRES"); v != "" {
		return v
	}
	return "postgres://postgres@localhost:5432/test?sslmode=disable"
}

// pgSchema creates a schema unique to this test on the local server, points
// a pool's search_path at it (and returns a DSN that does the same), and
// drops it afterwards. Without a server it skips locally and fails under CI.
func pgSchema(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgBaseDSN())
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL is required under CI: %v", err)
		}
		t.Skipf("PostgreSQL not reachable at %s (start it with pg_ctlcluster, or set IDEM_TEST_POSTGRES): %v", pgBaseDSN(), err)
	}
	defer admin.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	schema := "idempotency_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(pgBaseDSN(), "?") {
		sep = "&"
	}
	dsn := pgBaseDSN() + sep + "search_path=" + schema
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
		c, err := pgx.Connect(context.Background(), pgBaseDSN())
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
