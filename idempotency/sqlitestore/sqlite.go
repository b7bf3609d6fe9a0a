// Package sqlitestore is the embedded idempotency store: one SQLite
// database file (modernc.org/sqlite: pure Go, no cgo) holding the keys and
// the application's own tables, so a handler's writes and its stored
// response commit in one transaction (Tx).
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/internal/sqlcore"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// Store is the embedded store. Like the dedupe SQLite store it keeps one
// writer connection and begins every write with BEGIN IMMEDIATE (WAL mode,
// busy_timeout, synchronous=FULL). The handler's transaction is that writer:
// while a handler holds it (from its first Tx call until its response is
// stored), other requests wait to claim their keys. Keep such handlers
// short; a handler that never calls Tx holds the writer only for the brief
// claim and completion transactions.
type Store struct {
	*sqlcore.Store
	w, r *sql.DB
}

var _ idempotency.Store = (*Store)(nil)

// Schema returns the statements that create the keys table (default name
// "idem_keys"), for your migrations when StoreConfig.SkipSchema is set. They
// are idempotent (IF NOT EXISTS).
func Schema(table string) []string {
	if table == "" {
		table = "idem_keys"
	}
	return sqlcore.DDL(table, "BLOB", "BIGINT") // times in unix microseconds
}

// Open opens (creating if needed) the database at path and the keys table.
func Open(ctx context.Context, path string, cfg idempotency.StoreConfig) (*Store, error) {
	cfg, err := sqlcore.Defaults(cfg)
	if err != nil {
		return nil, err
	}
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	common := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	w, err := sql.Open("sqlite", base+"?_txlock=immediate&"+common)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", base+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	t := cfg.Table
	s := &Store{w: w, r: r}
	s.Store = sqlcore.New(t, cfg.CleanupBatch, sqlcore.Dialect{
		Begin: func(ctx context.Context) (sqlcore.Conn, error) {
			tx, err := w.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			return conn{tx}, nil
		},
		Read: func(ctx context.Context, q string, args ...any) sqlcore.Scanner {
			return r.QueryRowContext(ctx, q, args...)
		},
		NoRows: func(err error) bool { return errors.Is(err, sql.ErrNoRows) },
		Time:   func(t time.Time) any { return t.UnixMicro() },
		TimeDest: func() (any, func() time.Time) {
			var v int64
			return &v, func() time.Time { return time.UnixMicro(v).UTC() }
		},
		Cleanup: `DELETE FROM ` + t + ` WHERE rowid IN (SELECT rowid FROM ` + t + ` WHERE expires_at <= $1 LIMIT $2)`,
	})
	if !cfg.SkipSchema {
		if err := migrate(ctx, w, t); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func migrate(ctx context.Context, w *sql.DB, t string) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("idempotency: migrate: %w", err)
	}
	defer tx.Rollback()
	for _, stmt := range Schema(t) {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("idempotency: migrate: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("idempotency: migrate: %w", err)
	}
	return nil
}

// DB returns the writer handle for the application's own migrations. Inside
// a handler use Tx instead: the writer is busy with your transaction.
func (s *Store) DB() *sql.DB { return s.w }

// Close closes the store's connections.
func (s *Store) Close() error { return errors.Join(s.w.Close(), s.r.Close()) }

// Tx returns the request's transaction on a SQLite store, beginning it on
// first call. Writes through it commit together with the stored response,
// or roll back if the response is not stored. Do not commit or roll it back
// yourself. It returns idempotency.ErrNoTransaction outside the middleware
// or with another store.
func Tx(ctx context.Context) (*sql.Tx, error) {
	tx, err := idempotency.RequestTx(ctx)
	if err != nil {
		return nil, err
	}
	c, ok := tx.(conn)
	if !ok {
		return nil, idempotency.ErrNoTransaction
	}
	return c.tx, nil
}

type conn struct{ tx *sql.Tx }

func (c conn) Commit(context.Context) error { return c.tx.Commit() }
func (c conn) Rollback(context.Context) error {
	if err := c.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}
func (c conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := c.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
func (c conn) QueryRow(ctx context.Context, q string, args ...any) sqlcore.Scanner {
	return c.tx.QueryRowContext(ctx, q, args...)
}
