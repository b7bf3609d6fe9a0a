// Package pgstore is the idempotency store for PostgreSQL, through a
// caller-owned pgx v5 pool: the keys live next to the application's tables,
// so a handler's writes and its stored response commit in one transaction
// (Tx).
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/internal/sqlcore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps keys in PostgreSQL. Claims on different keys never wait for
// each other; two claims of one key serialize on its primary key.
type Store struct {
	*sqlcore.Store
	pool *pgxpool.Pool
}

var _ idempotency.Store = (*Store)(nil)

// Schema returns the statements that create the keys table (default name
// "idem_keys"), for your migrations when StoreConfig.SkipSchema is set. They
// are idempotent (IF NOT EXISTS).
func Schema(table string) []string {
	if table == "" {
		table = "idem_keys"
	}
	return sqlcore.DDL(table, "bytea", "timestamptz")
}

// New creates the keys table if needed (idempotently, under an advisory
// lock so concurrent starts do not race; unless StoreConfig.SkipSchema). A
// table created by an earlier version, with times in bigint microseconds,
// is converted to timestamptz.
func New(ctx context.Context, pool *pgxpool.Pool, cfg idempotency.StoreConfig) (*Store, error) {
	cfg, err := sqlcore.Defaults(cfg)
	if err != nil {
		return nil, err
	}
	t := cfg.Table
	s := &Store{pool: pool}
	s.Store = sqlcore.New(t, cfg.CleanupBatch, sqlcore.Dialect{
		Begin: func(ctx context.Context) (sqlcore.Conn, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, err
			}
			return conn{tx}, nil
		},
		Read: func(ctx context.Context, q string, args ...any) sqlcore.Scanner {
			return pool.QueryRow(ctx, q, args...)
		},
		NoRows: func(err error) bool { return errors.Is(err, pgx.ErrNoRows) },
		Time:   func(t time.Time) any { return t.UTC().Truncate(time.Microsecond) },
		TimeDest: func() (any, func() time.Time) {
			var v time.Time
			return &v, func() time.Time { return v.UTC() }
		},
		Cleanup: `DELETE FROM ` + t + ` WHERE (scope, idem_key) IN (
			SELECT scope, idem_key FROM ` + t + ` WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	})
	if cfg.SkipSchema {
		return s, nil
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		stmts := append([]string{`SELECT pg_advisory_xact_lock(hashtext('idem.idempotency.migrate'))`}, Schema(t)...)
		for _, stmt := range stmts {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		var typ string
		err := tx.QueryRow(ctx, `SELECT data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'expires_at'`, t).Scan(&typ)
		if err != nil || typ != "bigint" {
			return err
		}
		_, err = tx.Exec(ctx, `ALTER TABLE `+t+`
			ALTER COLUMN locked_until TYPE timestamptz USING to_timestamp(locked_until / 1e6),
			ALTER COLUMN created_at TYPE timestamptz USING to_timestamp(created_at / 1e6),
			ALTER COLUMN expires_at TYPE timestamptz USING to_timestamp(expires_at / 1e6)`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency: migrate: %w", err)
	}
	return s, nil
}

// Pool returns the pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Tx returns the request's transaction on a PostgreSQL store, beginning it
// on first call. Writes through it commit together with the stored
// response, or roll back if the response is not stored. Do not commit or
// roll it back yourself. It returns idempotency.ErrNoTransaction outside the
// middleware or with another store.
func Tx(ctx context.Context) (pgx.Tx, error) {
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

type conn struct{ tx pgx.Tx }

func (c conn) Commit(ctx context.Context) error { return c.tx.Commit(ctx) }
func (c conn) Rollback(ctx context.Context) error {
	if err := c.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return err
	}
	return nil
}
func (c conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := c.tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
func (c conn) QueryRow(ctx context.Context, q string, args ...any) sqlcore.Scanner {
	return c.tx.QueryRow(ctx, q, args...)
}
