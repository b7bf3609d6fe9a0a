// Package sqlcore is what the SQLite and PostgreSQL idempotency stores
// share: one set of SQL statements and the Store logic around them.
//
// Both stores run the same SQL: $N placeholders (modernc.org/sqlite accepts
// them), INSERT … ON CONFLICT … DO UPDATE … WHERE … RETURNING (SQLite ≥ 3.35,
// PostgreSQL ≥ 9.5). Times are a dialect's affair: integer microseconds in
// SQLite, timestamptz in PostgreSQL; the statements only compare them.
package sqlcore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/idem-dev/idem/idempotency"
)

// Conn is one transaction of either database.
type Conn interface {
	idempotency.Tx
	Exec(ctx context.Context, q string, args ...any) (int64, error)
	QueryRow(ctx context.Context, q string, args ...any) Scanner
}

// Scanner is a row.
type Scanner interface{ Scan(dest ...any) error }

// Dialect is what differs between the databases.
type Dialect struct {
	// Begin starts a write transaction.
	Begin func(ctx context.Context) (Conn, error)
	// Read runs a query outside any transaction.
	Read func(ctx context.Context, q string, args ...any) Scanner
	// NoRows tells the "no row" error.
	NoRows func(error) bool
	// Time encodes a time as a query argument.
	Time func(time.Time) any
	// TimeDest returns a Scan destination for a time column and a function
	// reading it after the Scan.
	TimeDest func() (dest any, get func() time.Time)
	// Cleanup is the statement deleting at most $2 rows expired at $1.
	Cleanup string
}

type queries struct{ claim, lookup, complete, release, extend, get string }

// Store implements idempotency.Store over a Dialect.
type Store struct {
	d     Dialect
	batch int
	q     queries
}

// New builds the store for table t; batch bounds one cleanup transaction.
func New(t string, batch int, d Dialect) *Store {
	const cols = `fingerprint, done, status, header, body, locked_until, created_at, expires_at`
	return &Store{d: d, batch: batch, q: queries{
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
		lookup: `SELECT ` + cols + ` FROM ` + t + ` WHERE scope = $1 AND idem_key = $2`,
		get:    `SELECT ` + cols + ` FROM ` + t + ` WHERE scope = $1 AND idem_key = $2 AND expires_at > $3`,
		// done is 1, or 2 for a completed request whose body was not
		// stored (Response.BodyOmitted).
		complete: `UPDATE ` + t + ` SET done = $7, token = '', locked_until = $8, status = $4, header = $5, body = $6 WHERE scope = $1 AND idem_key = $2 AND token = $3 AND done = 0`,
		release:  `DELETE FROM ` + t + ` WHERE scope = $1 AND idem_key = $2 AND token = $3 AND done = 0`,
		extend:   `UPDATE ` + t + ` SET locked_until = $4 WHERE scope = $1 AND idem_key = $2 AND token = $3 AND done = 0`,
	}}
}

// Claim implements idempotency.Store.
func (c *Store) Claim(ctx context.Context, key idempotency.Key, fingerprint string, now time.Time, lease, retention time.Duration) (idempotency.Claim, error) {
	// Fast path, without a write transaction: most lookups of an existing
	// key (replays, 409s, 422s) are answered by one read. A row that is done
	// changes only by expiring, and the answer for a running row is true at
	// the moment of the read, so this stays linearizable (checked by C9).
	// On PostgreSQL it also spares a replay the row lock, and its WAL flush,
	// that the upsert below takes even when it updates nothing.
	e, err := c.scanEntry(c.d.Read(ctx, c.q.get, key.Scope, key.Key, c.d.Time(now)))
	switch {
	case err == nil:
		switch {
		case e.Fingerprint != fingerprint:
			return idempotency.Claim{Status: idempotency.Mismatch}, nil
		case e.Done:
			return idempotency.Claim{Status: idempotency.Completed, Response: e.Response}, nil
		case e.LockedUntil.After(now):
			return idempotency.Claim{Status: idempotency.InProgress}, nil
		}
		// An abandoned claim of the same request: take it over below.
	case !c.d.NoRows(err):
		return idempotency.Claim{}, fmt.Errorf("idempotency: claim lookup: %w", err)
	}
	tx, err := c.d.Begin(ctx)
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("idempotency: claim: %w", err)
	}
	defer tx.Rollback(ctx)
	token := NewToken()
	var got string
	err = tx.QueryRow(ctx, c.q.claim, key.Scope, key.Key, fingerprint, token,
		c.d.Time(now.Add(lease)), c.d.Time(now), c.d.Time(now.Add(retention))).Scan(&got)
	switch {
	case err == nil:
		if err := tx.Commit(ctx); err != nil {
			return idempotency.Claim{}, fmt.Errorf("idempotency: claim commit: %w", err)
		}
		return idempotency.Claim{Status: idempotency.Claimed, Token: token}, nil
	case !c.d.NoRows(err):
		return idempotency.Claim{}, fmt.Errorf("idempotency: claim: %w", err)
	}
	// The row exists and was not ours to take (a concurrent request got
	// there between our read and our upsert). The upsert locked it, and this
	// statement sees its latest committed version.
	e, err = c.scanEntry(tx.QueryRow(ctx, c.q.lookup, key.Scope, key.Key))
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("idempotency: claim lookup: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return idempotency.Claim{}, fmt.Errorf("idempotency: claim commit: %w", err)
	}
	switch {
	case e.Fingerprint != fingerprint:
		return idempotency.Claim{Status: idempotency.Mismatch}, nil
	case !e.Done:
		return idempotency.Claim{Status: idempotency.InProgress}, nil
	}
	return idempotency.Claim{Status: idempotency.Completed, Response: e.Response}, nil
}

func (c *Store) scanEntry(row Scanner) (idempotency.Entry, error) {
	var e idempotency.Entry
	var done, status int64
	var header string
	var body []byte
	locked, lockedAt := c.d.TimeDest()
	created, createdAt := c.d.TimeDest()
	expires, expiresAt := c.d.TimeDest()
	if err := row.Scan(&e.Fingerprint, &done, &status, &header, &body, locked, created, expires); err != nil {
		return idempotency.Entry{}, err
	}
	h, err := DecodeHeader(header)
	if err != nil {
		return idempotency.Entry{}, err
	}
	e.Done = done != 0
	if e.Done {
		e.Response = idempotency.Response{Status: int(status), Header: h, Body: body, BodyOmitted: done == 2}
	} else {
		e.LockedUntil = lockedAt()
	}
	e.CreatedAt, e.ExpiresAt = createdAt(), expiresAt()
	return e, nil
}

// Complete implements idempotency.Store.
func (c *Store) Complete(ctx context.Context, tx idempotency.Tx, key idempotency.Key, token string, resp idempotency.Response) error {
	cn, ok := tx.(Conn)
	if !ok {
		return fmt.Errorf("idempotency: complete: transaction of type %T is not from this store", tx)
	}
	h, err := EncodeHeader(resp.Header)
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
	n, err := cn.Exec(ctx, c.q.complete, key.Scope, key.Key, token, resp.Status, h, body, done, c.d.Time(time.Unix(0, 0)))
	if err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	if n == 0 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Release implements idempotency.Store.
func (c *Store) Release(ctx context.Context, key idempotency.Key, token string) error {
	tx, err := c.d.Begin(ctx)
	if err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, c.q.release, key.Scope, key.Key, token); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	return tx.Commit(ctx)
}

// Extend implements idempotency.Store.
func (c *Store) Extend(ctx context.Context, key idempotency.Key, token string, until time.Time) error {
	tx, err := c.d.Begin(ctx)
	if err != nil {
		return fmt.Errorf("idempotency: extend: %w", err)
	}
	defer tx.Rollback(ctx)
	n, err := tx.Exec(ctx, c.q.extend, key.Scope, key.Key, token, c.d.Time(until))
	if err != nil {
		return fmt.Errorf("idempotency: extend: %w", err)
	}
	if n == 0 {
		return idempotency.ErrLeaseLost
	}
	return tx.Commit(ctx)
}

// Get implements idempotency.Store.
func (c *Store) Get(ctx context.Context, key idempotency.Key, now time.Time) (idempotency.Entry, error) {
	e, err := c.scanEntry(c.d.Read(ctx, c.q.get, key.Scope, key.Key, c.d.Time(now)))
	if c.d.NoRows(err) {
		return idempotency.Entry{}, idempotency.ErrNotFound
	}
	if err != nil {
		return idempotency.Entry{}, fmt.Errorf("idempotency: get: %w", err)
	}
	return e, nil
}

// Cleanup implements idempotency.Store.
func (c *Store) Cleanup(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tx, err := c.d.Begin(ctx)
		if err != nil {
			return total, fmt.Errorf("idempotency: cleanup: %w", err)
		}
		n, err := tx.Exec(ctx, c.d.Cleanup, c.d.Time(now), c.batch)
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

// Begin implements idempotency.Store.
func (c *Store) Begin(ctx context.Context) (idempotency.Tx, error) { return c.d.Begin(ctx) }

// NewToken returns a random claim token.
func NewToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// EncodeHeader keeps a header as JSON.
func EncodeHeader(h http.Header) (string, error) {
	if h == nil {
		h = http.Header{}
	}
	b, err := json.Marshal(h)
	return string(b), err
}

// DecodeHeader is the inverse of EncodeHeader.
func DecodeHeader(s string) (http.Header, error) {
	h := http.Header{}
	if s == "" {
		return h, nil
	}
	err := json.Unmarshal([]byte(s), &h)
	return h, err
}

// Defaults fills in cfg's zero fields and checks its table name.
func Defaults(cfg idempotency.StoreConfig) (idempotency.StoreConfig, error) {
	if cfg.Table == "" {
		cfg.Table = "idem_keys"
	}
	if cfg.CleanupBatch <= 0 {
		cfg.CleanupBatch = 1000
	}
	return cfg, ValidIdent(cfg.Table)
}

// ValidIdent keeps table names safe to splice into SQL: identifiers cannot
// be bound as parameters.
func ValidIdent(s string) error {
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

// DDL is the keys table with the dialect's blob and time types.
func DDL(t, blob, ts string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
			scope        TEXT NOT NULL,
			idem_key     TEXT NOT NULL,
			fingerprint  TEXT NOT NULL,
			token        TEXT NOT NULL,   -- owner of an in-flight claim, '' when done
			done         INTEGER NOT NULL, -- 0 running, 1 done, 2 done without a stored body
			locked_until ` + ts + ` NOT NULL,
			status       INTEGER NOT NULL,
			header       TEXT NOT NULL,   -- JSON of http.Header
			body         ` + blob + `,
			created_at   ` + ts + ` NOT NULL,
			expires_at   ` + ts + ` NOT NULL,
			PRIMARY KEY (scope, idem_key)
		)`,
		`CREATE INDEX IF NOT EXISTS ` + t + `_expires_at ON ` + t + ` (expires_at)`,
	}
}
