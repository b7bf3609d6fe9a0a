package dedupe_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/pgkit"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The tests are written once against storeUnderTest and run on both stores.
// storeUnderTest hides the native transaction type behind effectWriter so a
// test reads as the specification, not as two copies of it.

type effectWriter interface {
	// addEffect inserts one row for id into the application's effects table,
	// inside the store's transaction.
	addEffect(ctx context.Context, id string) error
}

type storeUnderTest struct {
	name    string
	clock   *fakeClock
	process func(ctx context.Context, id string, fn func(ctx context.Context, w effectWriter) error) (dedupe.Result, error)
	lookup  func(ctx context.Context, id string) (dedupe.Record, error)
	cleanup func(ctx context.Context) (int64, error)
	// effects returns how many effect rows exist for id ("" = all rows).
	effects func(t testing.TB, id string) int
	// dsn reopens the same database from another process (crash test).
	dsn string
	// raw is the *sqlitestore.Store or *pgstore.Store itself.
	raw any
	// committedRecords sums the next offsets a consumer group stored for
	// its partitions: the number of records it settled, on a fresh topic.
	committedRecords func(t testing.TB, group string) int64
}

const offsetsSumSQL = `SELECT coalesce(sum(next_offset), 0) FROM idem_processed_offsets WHERE consumer_group = $1`

// fakeClock is the tests' clock; the alias keeps the specs' name for it.
type fakeClock = testkit.Clock

func newFakeClock() *fakeClock {
	return testkit.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// eachStore runs fn as a subtest against a fresh SQLite file and a fresh
// PostgreSQL schema.
func eachStore(t *testing.T, cfg dedupe.Config, fn func(t *testing.T, s *storeUnderTest)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, newSQLiteUnderTest(t, cfg)) })
	t.Run("postgres", func(t *testing.T) { fn(t, newPostgresUnderTest(t, cfg)) })
}

const effectsDDL = `CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL, n INTEGER NOT NULL)`

type sqlEffects struct{ tx *sql.Tx }

func (w sqlEffects) addEffect(ctx context.Context, id string) error {
	_, err := w.tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, id)
	return err
}

type pgEffects struct{ tx pgx.Tx }

func (w pgEffects) addEffect(ctx context.Context, id string) error {
	_, err := w.tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, id)
	return err
}

func newSQLiteUnderTest(t testing.TB, cfg dedupe.Config) *storeUnderTest {
	path := filepath.Join(t.TempDir(), "dedupe.db")
	return openSQLiteUnderTest(t, path, cfg)
}

func openSQLiteUnderTest(t testing.TB, path string, cfg dedupe.Config) *storeUnderTest {
	ctx := context.Background()
	clock := newFakeClock()
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	s, err := sqlitestore.Open(ctx, path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.DB().ExecContext(ctx, effectsDDL); err != nil {
		t.Fatal(err)
	}
	return &storeUnderTest{
		name:  "sqlite",
		clock: clock,
		process: func(ctx context.Context, id string, fn func(context.Context, effectWriter) error) (dedupe.Result, error) {
			return s.Process(ctx, id, func(ctx context.Context, tx *sql.Tx) error { return fn(ctx, sqlEffects{tx}) })
		},
		lookup:  s.Lookup,
		cleanup: func(ctx context.Context) (int64, error) { return s.Cleanup(ctx, cfg.Now()) },
		effects: func(t testing.TB, id string) int {
			var n int
			err := s.DB().QueryRowContext(context.Background(),
				`SELECT count(*) FROM effects WHERE ? = '' OR event_id = ?`, id, id).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			return n
		},
		dsn: path,
		raw: s,
		committedRecords: func(t testing.TB, group string) int64 {
			var n int64
			if err := s.DB().QueryRowContext(context.Background(), offsetsSumSQL, group).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		},
	}
}

func newPostgresUnderTest(t testing.TB, cfg dedupe.Config) *storeUnderTest {
	ctx := context.Background()
	pool, dsn := pgSchema(t)
	clock := newFakeClock()
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	s, err := pgstore.New(ctx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, effectsDDL); err != nil {
		t.Fatal(err)
	}
	return &storeUnderTest{
		name:  "postgres",
		clock: clock,
		process: func(ctx context.Context, id string, fn func(context.Context, effectWriter) error) (dedupe.Result, error) {
			return s.Process(ctx, id, func(ctx context.Context, tx pgx.Tx) error { return fn(ctx, pgEffects{tx}) })
		},
		lookup:  s.Lookup,
		cleanup: func(ctx context.Context) (int64, error) { return s.Cleanup(ctx, cfg.Now()) },
		effects: func(t testing.TB, id string) int {
			var n int
			err := pool.QueryRow(context.Background(),
				`SELECT count(*) FROM effects WHERE $1 = '' OR event_id = $1`, id).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			return n
		},
		dsn: dsn,
		raw: s,
		committedRecords: func(t testing.TB, group string) int64 {
			var n int64
			if err := pool.QueryRow(context.Background(), offsetsSumSQL, group).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		},
	}
}

// pgSchema gives the test its own PostgreSQL schema (see pgkit.Schema).
func pgSchema(t testing.TB) (*pgxpool.Pool, string) { return pgkit.Schema(t, "dedupe_test") }
