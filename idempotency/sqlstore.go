package idempotency

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// Both stores run the same SQL: $N placeholders (modernc.org/sqlite accepts
// them), INSERT … ON CONFLICT … DO UPDATE … WHERE … RETURNING (SQLite ≥ 3.35,
// PostgreSQL ≥ 9.5), and times as integer microseconds. Only the DDL, the
// cleanup statement and the transaction plumbing differ.

// StoreConfig configures either store. The zero value is usable.
type StoreConfig struct {
	// Table holds the keys (default "idem_keys"); letters, digits and _.
	Table string
	// CleanupBatch bounds the rows one Cleanup transaction deletes (default 1000).
	CleanupBatch int
}

// conn is one transaction of either database.
type conn interface {
	Tx
	exec(ctx context.Context, q string, args ...any) (int64, error)
	queryRow(ctx context.Context, q string, args ...any) scanner
}

type scanner interface{ Scan(dest ...any) error }

type queries struct{ claim, lookup, complete, release, extend, get, cleanup string }

// core implements Store over a conn factory.
type core struct {
	table  string
	batch  int
	q      queries
	begin  func(ctx context.Context) (conn, error)
	read   func(ctx context.Context, q string, args ...any) scanner
	noRows func(error) bool
}

func newQueries(t, cleanup string) queries {
	const cols = `fingerprint, done, status, header, body, locked_until, created_at, expires_at`
	return queries{
		// An existing row is overwritten only if it expired, or if it is an
		// abandoned in-flight claim (lease over) of the same request: an
		// abandoned claim of a different request still answers 422.
		claim: `INSERT INTO ` + t + ` (scope, idem_key, fingerprint, token, done, locked_until, status, header, body, created_at, expires_at)
			VALUES ($1, $2, $3, $4, 0, $5, 0, '', NULL, $6, $7)
			ON CONFLICT (scope, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint, token = excluded.token, done = 0,
				locked_until = excluded.locked_until, status = 0, header = '', body = NULL,
				created_at = excluded.created_at, expires_at = excluded.expires_at
			WHERE ` + t + `.expires_at <= excluded.created_at
				OR (` + t + `.done = 0 AND ` + t + `.locked_until <= excluded.created_at AND ` + t + `.fingerprint = excluded.fingerprint)
			RETURNING token`,
		lookup:   `SELECT ` + cols + ` FROM ` + t + ` WHERE scope = $1 AND idem_key = $2`,
		get:      `SELECT ` + cols + ` FROM ` + t + ` WHERE scope = $1 AND idem_key = $2 AND expires_at > $3`,
		// done is 1, or 2 for a completed request whose body was not stored
		// (Response.BodyOmitted).
		complete: `UPDATE ` + t + ` SET done = $7, token = '', locked_until = 0, status = $4, header = $5, body = $6 WHERE scope = $1 AND idem_key = $2 AND token = $3 AND done = 0`,
		release:  `DELETE FROM ` + t + ` WHERE scope = $1 AND idem_key = $2 AND token = $3 AND done = 0`,
		extend:   `UPDATE ` + t + ` SET locked_until = $4 WHERE scope = $1 AND idem_key = $2 AND token = $3 AND done = 0`,
		cleanup:  cleanup,
	}
}

func ddl(t, blob string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
			scope        TEXT NOT NULL,
			idem_key     TEXT NOT NULL,
			fingerprint  TEXT NOT NULL,
			token        TEXT NOT NULL,   -- owner of an in-flight claim, '' when done
			done         INTEGER NOT NULL,
			locked_until BIGINT NOT NULL, -- unix microseconds, like every time here
			status       INTEGER NOT NULL,
			header       TEXT NOT NULL,   -- JSON of http.Header
			body         ` + blob + `,
			created_at   BIGINT NOT NULL,
			expires_at   BIGINT NOT NULL,
			PRIMARY KEY (scope, idem_key)
		)`,
		`CREATE INDEX IF NOT EXISTS ` + t + `_expires_at ON ` + t + ` (expires_at)`,
	}
}

func (c *core) Claim(ctx context.Context, key Key, fingerprint string, now time.Time, lease, retention time.Duration) (Claim, error) {
	// Fast path, without a write transaction: most lookups of an existing
	// key (replays, 409s, 422s) are answered by one read. A row that is done
	// changes only by expiring, and the answer for a running row is true at
	// the moment of the read, so this stays linearizable (checked by C9).
	// On PostgreSQL it also spares a replay the row lock, and its WAL flush,
	// that the upsert below takes even when it updates nothing.
	e, err := scanEntry(c.read(ctx, c.q.get, key.Scope, key.Key, micros(now)))
	switch {
	case err == nil:
		switch {
		case e.Fingerprint != fingerprint:
			return Claim{Status: Mismatch}, nil
		case e.Done:
			return Claim{Status: Completed, Response: e.Response}, nil
		case e.LockedUntil.After(now):
			return Claim{Status: InProgress}, nil
		}
		// An abandoned claim of the same request: take it over below.
	case !c.noRows(err):
		return Claim{}, fmt.Errorf("idempotency: claim lookup: %w", err)
	}
	tx, err := c.begin(ctx)
	if err != nil {
		return Claim{}, fmt.Errorf("idempotency: claim: %w", err)
	}
	defer tx.Rollback(ctx)
	token := newToken()
	var got string
	err = tx.queryRow(ctx, c.q.claim, key.Scope, key.Key, fingerprint, token,
		micros(now.Add(lease)), micros(now), micros(now.Add(retention))).Scan(&got)
	switch {
	case err == nil:
		if err := tx.Commit(ctx); err != nil {
			return Claim{}, fmt.Errorf("idempotency: claim commit: %w", err)
		}
		return Claim{Status: Claimed, Token: token}, nil
	case !c.noRows(err):
		return Claim{}, fmt.Errorf("idempotency: claim: %w", err)
	}
	// The row exists and was not ours to take (a concurrent request got
	// there between our read and our upsert). The upsert locked it, and this
	// statement sees its latest committed version.
	e, err = scanEntry(tx.queryRow(ctx, c.q.lookup, key.Scope, key.Key))
	if err != nil {
		return Claim{}, fmt.Errorf("idempotency: claim lookup: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Claim{}, fmt.Errorf("idempotency: claim commit: %w", err)
	}
	switch {
	case e.Fingerprint != fingerprint:
		return Claim{Status: Mismatch}, nil
	case !e.Done:
		return Claim{Status: InProgress}, nil
	}
	return Claim{Status: Completed, Response: e.Response}, nil
}

func scanEntry(row scanner) (Entry, error) {
	var e Entry
	var done, status int64
	var header string
	var body []byte
	var locked, created, expires int64
	if err := row.Scan(&e.Fingerprint, &done, &status, &header, &body, &locked, &created, &expires); err != nil {
		return Entry{}, err
	}
	h, err := decodeHeader(header)
	if err != nil {
		return Entry{}, err
	}
	e.Done = done != 0
	if e.Done {
		e.Response = Response{Status: int(status), Header: h, Body: body, BodyOmitted: done == 2}
	} else {
		e.LockedUntil = fromMicros(locked)
	}
	e.CreatedAt, e.ExpiresAt = fromMicros(created), fromMicros(expires)
	return e, nil
}

func (c *core) Complete(ctx context.Context, tx Tx, key Key, token string, resp Response) error {
	cn, ok := tx.(conn)
	if !ok {
		return fmt.Errorf("idempotency: complete: transaction of type %T is not from this store", tx)
	}
	h, err := encodeHeader(resp.Header)
	if err != nil {
		return err
	}
	body, done := resp.Body, 1
	if body == nil {
		body = []byte{}
	}
	if resp.BodyOmitted {
		body, done = []byte{}, 2
	}
	n, err := cn.exec(ctx, c.q.complete, key.Scope, key.Key, token, resp.Status, h, body, done)
	if err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

func (c *core) Release(ctx context.Context, key Key, token string) error {
	tx, err := c.begin(ctx)
	if err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.exec(ctx, c.q.release, key.Scope, key.Key, token); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	return tx.Commit(ctx)
}

func (c *core) Extend(ctx context.Context, key Key, token string, until time.Time) error {
	tx, err := c.begin(ctx)
	if err != nil {
		return fmt.Errorf("idempotency: extend: %w", err)
	}
	defer tx.Rollback(ctx)
	n, err := tx.exec(ctx, c.q.extend, key.Scope, key.Key, token, micros(until))
	if err != nil {
		return fmt.Errorf("idempotency: extend: %w", err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return tx.Commit(ctx)
}

func (c *core) Get(ctx context.Context, key Key, now time.Time) (Entry, error) {
	e, err := scanEntry(c.read(ctx, c.q.get, key.Scope, key.Key, micros(now)))
	if c.noRows(err) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("idempotency: get: %w", err)
	}
	return e, nil
}

func (c *core) Cleanup(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tx, err := c.begin(ctx)
		if err != nil {
			return total, fmt.Errorf("idempotency: cleanup: %w", err)
		}
		n, err := tx.exec(ctx, c.q.cleanup, micros(now), c.batch)
		if err == nil {
			err = tx.Commit(ctx)
		}
		tx.Rollback(ctx)
		if err != nil {
			return total, fmt.Errorf("idempotency: cleanup: %w", err)
		}
		total += n
		if n < int64(c.batch) {
			return total, nil
		}
	}
}

func (cfg StoreConfig) withDefaults() (StoreConfig, error) {
	if cfg.Table == "" {
		cfg.Table = "idem_keys"
	}
	if cfg.CleanupBatch <= 0 {
		cfg.CleanupBatch = 1000
	}
	if err := validIdent(cfg.Table); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// validIdent keeps table names safe to splice into SQL: identifiers cannot be
// bound as parameters.
func validIdent(s string) error {
	if s == "" || len(s) > 50 {
		return fmt.Errorf("idempotency: invalid table name %q", s)
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("idempotency: invalid table name %q (letters, digits, _)", s)
		}
	}
	return nil
}

// ---- SQLite ----

// SQLite is the embedded store. Like dedupe.SQLite it keeps one writer
// connection and begins every write with BEGIN IMMEDIATE (WAL mode,
// busy_timeout, synchronous=FULL). The handler's transaction is that writer:
// while a handler holds it (from its first SQLiteTx call until its response
// is stored), other requests wait to claim their keys. Keep such handlers
// short; a handler that never calls SQLiteTx holds the writer only for the
// brief claim and completion transactions.
type SQLite struct {
	core
	w, r *sql.DB
}

// OpenSQLite opens (creating if needed) the database at path and the keys table.
func OpenSQLite(ctx context.Context, path string, cfg StoreConfig) (*SQLite, error) {
	cfg, err := cfg.withDefaults()
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
	s := &SQLite{w: w, r: r}
	s.core = core{
		table: t, batch: cfg.CleanupBatch,
		q: newQueries(t, `DELETE FROM `+t+` WHERE rowid IN (SELECT rowid FROM `+t+` WHERE expires_at <= $1 LIMIT $2)`),
		begin: func(ctx context.Context) (conn, error) {
			tx, err := w.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			return sqliteConn{tx}, nil
		},
		read:   func(ctx context.Context, q string, args ...any) scanner { return r.QueryRowContext(ctx, q, args...) },
		noRows: func(err error) bool { return errors.Is(err, sql.ErrNoRows) },
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		s.Close()
		return nil, err
	}
	defer tx.Rollback()
	for _, stmt := range ddl(t, "BLOB") {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			s.Close()
			return nil, fmt.Errorf("idempotency: migrate: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		s.Close()
		return nil, fmt.Errorf("idempotency: migrate: %w", err)
	}
	return s, nil
}

// DB returns the writer handle for the application's own migrations. Inside
// a handler use SQLiteTx instead: the writer is busy with your transaction.
func (s *SQLite) DB() *sql.DB { return s.w }

// Close closes the store's connections.
func (s *SQLite) Close() error { return errors.Join(s.w.Close(), s.r.Close()) }

type sqliteConn struct{ tx *sql.Tx }

func (c sqliteConn) Commit(context.Context) error { return c.tx.Commit() }
func (c sqliteConn) Rollback(context.Context) error {
	if err := c.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}
func (c sqliteConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := c.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
func (c sqliteConn) queryRow(ctx context.Context, q string, args ...any) scanner {
	return c.tx.QueryRowContext(ctx, q, args...)
}

// ---- PostgreSQL ----

// Postgres is the store for PostgreSQL through a caller-owned pgxpool. Claims
// on different keys never wait for each other; two claims of one key
// serialize on its primary key.
type Postgres struct {
	core
	pool *pgxpool.Pool
}

// NewPostgres creates the keys table if needed (idempotently, under an
// advisory lock so concurrent starts do not race).
func NewPostgres(ctx context.Context, pool *pgxpool.Pool, cfg StoreConfig) (*Postgres, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := cfg.Table
	s := &Postgres{pool: pool}
	s.core = core{
		table: t, batch: cfg.CleanupBatch,
		q: newQueries(t, `DELETE FROM `+t+` WHERE (scope, idem_key) IN (
			SELECT scope, idem_key FROM `+t+` WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`),
		begin: func(ctx context.Context) (conn, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, err
			}
			return pgConn{tx}, nil
		},
		read:   func(ctx context.Context, q string, args ...any) scanner { return pool.QueryRow(ctx, q, args...) },
		noRows: func(err error) bool { return errors.Is(err, pgx.ErrNoRows) },
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		stmts := append([]string{`SELECT pg_advisory_xact_lock(hashtext('idem.idempotency.migrate'))`}, ddl(t, "BYTEA")...)
		for _, stmt := range stmts {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency: migrate: %w", err)
	}
	return s, nil
}

// Pool returns the pool the store uses.
func (s *Postgres) Pool() *pgxpool.Pool { return s.pool }

type pgConn struct{ tx pgx.Tx }

func (c pgConn) Commit(ctx context.Context) error { return c.tx.Commit(ctx) }
func (c pgConn) Rollback(ctx context.Context) error {
	if err := c.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return err
	}
	return nil
}
func (c pgConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := c.tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
func (c pgConn) queryRow(ctx context.Context, q string, args ...any) scanner {
	return c.tx.QueryRow(ctx, q, args...)
}

var (
	_ Store = (*SQLite)(nil)
	_ Store = (*Postgres)(nil)
)

// Begin starts a transaction on the store's database.
func (c *core) Begin(ctx context.Context) (Tx, error) { return c.begin(ctx) }
