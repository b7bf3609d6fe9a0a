package dedupe

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// SQLite is the embedded store: one database file, no server, no cgo.
//
// SQLite allows one writer at a time, so the store keeps exactly one writer
// connection and starts every write transaction with BEGIN IMMEDIATE. That
// takes the write lock before the claim instead of upgrading a read lock
// half-way (an upgrade that fails with SQLITE_BUSY regardless of
// busy_timeout). Concurrent Process calls in one process queue for the writer
// connection; another process waits up to busy_timeout. Reads (Lookup) use a
// separate pool and, thanks to WAL, do not wait for the writer.
//
// The handler receives the *sql.Tx. While it runs it holds the only writer
// connection: it must not use DB() itself (that would wait for itself), and
// it should not make slow network calls it can avoid, since every other
// delivery waits behind it.
type SQLite struct {
	cfg   Config
	w, r  *sql.DB
	q     queries
	table string
	// Statements prepared once on the writer connection: parsing the claim
	// upsert costs more than running it.
	claimStmt, claimManyStmt, dupStmt, offsetStmt *sql.Stmt
}

var _ OffsetStore[*sql.Tx] = (*SQLite)(nil)

// queries are built once per store because the table name is configurable.
type queries struct {
	claim, dup, lookup, cleanup string
	storeOffset, loadOffsets    string
	claimMany, dupMany          string // batch forms; dupMany on Postgres only
	claimOffset                 string // Postgres only: claim and store the offset in one statement
}

// OpenSQLite opens (creating if needed) the database file at path and the
// processed-ids table in it. The file may hold the application's own tables
// too: that is the point, since the handler's writes and the claim must share
// one transaction. Synchronous=FULL makes every Process durable on return.
func OpenSQLite(ctx context.Context, path string, cfg Config) (*SQLite, error) {
	cfg = cfg.withDefaults()
	if err := validIdent(cfg.Table); err != nil {
		return nil, err
	}
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	common := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	w, err := sql.Open("sqlite", base+"?_txlock=immediate&"+common)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", base+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	s := &SQLite{cfg: cfg, w: w, r: r, table: cfg.Table}
	s.q = queries{
		// The claim is an upsert that only overwrites an expired record, so
		// "expired" means exactly "absent" without waiting for Cleanup.
		claim: `INSERT INTO ` + s.table + ` (event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at)
			VALUES (?, ?, ?, ?, 0, NULL, ?)
			ON CONFLICT (event_id) DO UPDATE SET consumer = excluded.consumer, outcome = excluded.outcome,
				processed_at = excluded.processed_at, duplicates = 0, last_duplicate_at = NULL, expires_at = excluded.expires_at
			WHERE ` + s.table + `.expires_at <= excluded.processed_at`,
		dup: `UPDATE ` + s.table + ` SET duplicates = duplicates + 1, last_duplicate_at = ? WHERE event_id = ?
			RETURNING event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at`,
		lookup: `SELECT event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at
			FROM ` + s.table + ` WHERE event_id = ? AND expires_at > ?`,
		cleanup:     `DELETE FROM ` + s.table + ` WHERE event_id IN (SELECT event_id FROM ` + s.table + ` WHERE expires_at <= ? LIMIT ?)`,
		storeOffset: storeOffsetSQL(s.table),
		loadOffsets: loadOffsetsSQL(s.table),
		// The ids arrive as one JSON array. "WHERE true" resolves SQLite's
		// INSERT … SELECT … ON CONFLICT parsing ambiguity.
		claimMany: `INSERT INTO ` + s.table + ` (event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at)
			SELECT value, ?2, 'processed', ?3, 0, NULL, ?4 FROM json_each(?1) WHERE true
			ON CONFLICT (event_id) DO UPDATE SET consumer = excluded.consumer, outcome = excluded.outcome,
				processed_at = excluded.processed_at, duplicates = 0, last_duplicate_at = NULL, expires_at = excluded.expires_at
			WHERE ` + s.table + `.expires_at <= excluded.processed_at
			RETURNING event_id`,
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{{&s.claimStmt, s.q.claim}, {&s.claimManyStmt, s.q.claimMany}, {&s.dupStmt, s.q.dup}, {&s.offsetStmt, s.q.storeOffset}} {
		if *p.stmt, err = w.PrepareContext(ctx, p.sql); err != nil {
			s.Close()
			return nil, fmt.Errorf("dedupe: prepare: %w", err)
		}
	}
	return s, nil
}

// migrate is idempotent: every statement is IF NOT EXISTS, and it runs under
// the write lock so two processes opening one file do not race.
func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("dedupe: migrate: %w", err)
	}
	defer tx.Rollback()
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + s.table + ` (
			event_id          TEXT PRIMARY KEY,
			consumer          TEXT NOT NULL,
			outcome           TEXT NOT NULL,
			processed_at      INTEGER NOT NULL, -- unix microseconds
			duplicates        INTEGER NOT NULL DEFAULT 0,
			last_duplicate_at INTEGER,
			expires_at        INTEGER NOT NULL
		) WITHOUT ROWID`, // one B-tree keyed by event_id, not a rowid table plus a key index
		`CREATE INDEX IF NOT EXISTS ` + s.table + `_expires_at ON ` + s.table + ` (expires_at)`,
		offsetsDDL(s.table),
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("dedupe: migrate: %w", err)
		}
	}
	return tx.Commit()
}

// DB returns the writer handle, for the application's own migrations and
// writes outside Process. Do not use it from inside a handler.
func (s *SQLite) DB() *sql.DB { return s.w }

// Close closes both connection pools.
func (s *SQLite) Close() error {
	for _, st := range []*sql.Stmt{s.claimStmt, s.claimManyStmt, s.dupStmt, s.offsetStmt} {
		if st != nil {
			st.Close()
		}
	}
	return errors.Join(s.w.Close(), s.r.Close())
}

// Process claims eventID and runs h with the same transaction; the claim and
// h's writes commit together.
//
//   - First delivery: h runs; if it returns nil the transaction commits and
//     the result is Processed.
//   - Already processed (record not expired): h does not run; the duplicate
//     is counted in the audit record and the result is Duplicate, err nil.
//   - h returns an error: everything rolls back, nothing is recorded, and the
//     error is returned; the next delivery runs h again. If the error is
//     Permanent, the id is then recorded as rejected (Status Rejected).
//   - h panics: the transaction rolls back and the panic continues.
//
// Concurrent deliveries of one id wait for each other; exactly one runs h to
// commit. h must not call tx.Commit or tx.Rollback.
func (s *SQLite) Process(ctx context.Context, eventID string, h Handler[*sql.Tx]) (Result, error) {
	return s.process(ctx, eventID, nil, h)
}

// process is Process that, if pos is not nil, also stores the consumer's
// next offset in the same transaction, whatever the outcome.
func (s *SQLite) process(ctx context.Context, eventID string, pos *position, h Handler[*sql.Tx]) (Result, error) {
	if eventID == "" {
		return Result{}, ErrEmptyEventID
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Result{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	defer tx.Rollback() // no-op after Commit; runs on a handler panic
	now := s.cfg.now()
	claimed, err := s.claim(ctx, tx, eventID, outcomeProcessed, now)
	if err != nil {
		return Result{}, err
	}
	if !claimed {
		rec, err := s.countDuplicate(ctx, tx, eventID, now)
		if err != nil {
			return Result{}, err
		}
		if err := s.storeOffset(ctx, tx, pos); err != nil {
			return Result{}, err
		}
		if err := tx.Commit(); err != nil {
			return Result{}, fmt.Errorf("dedupe: commit duplicate: %w", err)
		}
		return Result{Status: Duplicate, Record: rec}, nil
	}
	herr := h(ctx, tx)
	if herr == nil {
		herr = s.storeOffset(ctx, tx, pos)
	}
	if herr != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return Result{}, errors.Join(herr, rerr)
		}
		if IsPermanent(herr) {
			return s.reject(ctx, eventID, pos, herr)
		}
		return Result{}, herr
	}
	if err := tx.Commit(); err != nil {
		return Result{}, fmt.Errorf("dedupe: commit: %w", err)
	}
	return Result{Status: Processed, Record: s.fresh(eventID, outcomeProcessed, now)}, nil
}

// reject records a permanently failed event in its own transaction, after the
// handler's writes were rolled back.
func (s *SQLite) reject(ctx context.Context, eventID string, pos *position, herr error) (Result, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Result{}, errors.Join(herr, err)
	}
	defer tx.Rollback()
	now := s.cfg.now()
	outcome := rejectedOutcome(herr)
	claimed, err := s.claim(ctx, tx, eventID, outcome, now)
	if err != nil {
		return Result{}, errors.Join(herr, err)
	}
	res := Result{Status: Rejected, Record: s.fresh(eventID, outcome, now)}
	if !claimed { // cannot happen with one writer, kept for symmetry with Postgres
		rec, err := s.countDuplicate(ctx, tx, eventID, now)
		if err != nil {
			return Result{}, errors.Join(herr, err)
		}
		res = Result{Status: Duplicate, Record: rec}
	}
	if err := s.storeOffset(ctx, tx, pos); err != nil {
		return Result{}, errors.Join(herr, err)
	}
	if err := tx.Commit(); err != nil {
		return Result{}, errors.Join(herr, err)
	}
	return res, herr
}

func (s *SQLite) fresh(eventID, outcome string, now time.Time) Record {
	return Record{EventID: eventID, Consumer: s.cfg.Consumer, Outcome: outcome, ProcessedAt: now, ExpiresAt: s.cfg.expiry(now)}
}

func (s *SQLite) claim(ctx context.Context, tx *sql.Tx, eventID, outcome string, now time.Time) (bool, error) {
	// An upsert whose DO UPDATE is skipped by its WHERE changes no row, so
	// RowsAffected tells claimed from duplicate without a result set.
	res, err := tx.StmtContext(ctx, s.claimStmt).ExecContext(ctx, eventID, s.cfg.Consumer, outcome, now.UnixMicro(), s.cfg.expiry(now).UnixMicro())
	if err != nil {
		return false, fmt.Errorf("dedupe: claim %q: %w", eventID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("dedupe: claim %q: %w", eventID, err)
	}
	return n == 1, nil
}

func (s *SQLite) countDuplicate(ctx context.Context, tx *sql.Tx, eventID string, now time.Time) (Record, error) {
	rec, err := scanSQLiteRecord(tx.StmtContext(ctx, s.dupStmt).QueryRowContext(ctx, now.UnixMicro(), eventID))
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: count duplicate %q: %w", eventID, err)
	}
	return rec, nil
}

func scanSQLiteRecord(row *sql.Row) (Record, error) {
	var rec Record
	var processed, expires int64
	var lastDup sql.NullInt64
	if err := row.Scan(&rec.EventID, &rec.Consumer, &rec.Outcome, &processed, &rec.Duplicates, &lastDup, &expires); err != nil {
		return Record{}, err
	}
	rec.ProcessedAt = time.UnixMicro(processed).UTC()
	if lastDup.Valid {
		rec.LastDuplicateAt = time.UnixMicro(lastDup.Int64).UTC()
	}
	rec.ExpiresAt = time.UnixMicro(expires).UTC()
	if rec.ExpiresAt.Equal(forever) {
		rec.ExpiresAt = time.Time{}
	}
	return rec, nil
}

// Lookup returns the audit record of eventID, or ErrNotFound if there is none
// or it has expired.
func (s *SQLite) Lookup(ctx context.Context, eventID string) (Record, error) {
	rec, err := scanSQLiteRecord(s.r.QueryRowContext(ctx, s.q.lookup, eventID, s.cfg.now().UnixMicro()))
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup %q: %w", eventID, err)
	}
	return rec, nil
}

// Cleanup deletes expired records, at most CleanupBatch per transaction so
// the writer lock is held only briefly, until none are left or ctx is done.
// It returns how many rows it deleted.
func (s *SQLite) Cleanup(ctx context.Context) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		res, err := s.w.ExecContext(ctx, s.q.cleanup, s.cfg.now().UnixMicro(), s.cfg.CleanupBatch)
		if err != nil {
			return total, fmt.Errorf("dedupe: cleanup: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < int64(s.cfg.CleanupBatch) {
			return total, nil
		}
	}
}

func (s *SQLite) storeOffset(ctx context.Context, tx *sql.Tx, pos *position) error {
	if pos == nil {
		return nil
	}
	if _, err := tx.StmtContext(ctx, s.offsetStmt).ExecContext(ctx, pos.group, pos.topic, pos.partition, pos.next); err != nil {
		return fmt.Errorf("dedupe: store offset: %w", err)
	}
	return nil
}

func (s *SQLite) loadOffsets(ctx context.Context, group string) (map[string]map[int32]int64, error) {
	rows, err := s.r.QueryContext(ctx, s.q.loadOffsets, group)
	if err != nil {
		return nil, fmt.Errorf("dedupe: load offsets: %w", err)
	}
	defer rows.Close()
	out := map[string]map[int32]int64{}
	for rows.Next() {
		var topic string
		var partition int32
		var next int64
		if err := rows.Scan(&topic, &partition, &next); err != nil {
			return nil, err
		}
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][partition] = next
	}
	return out, rows.Err()
}

// processBatch claims and handles several records in one transaction: one
// commit (one fsync) for the batch. Any error rolls the whole batch back;
// the Consumer then settles the records one by one.
func (s *SQLite) processBatch(ctx context.Context, ids []string, pos *position, run func(ctx context.Context, tx *sql.Tx, i int) error) ([]Result, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("dedupe: begin: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		if id == "" {
			return nil, ErrEmptyEventID
		}
	}
	now := s.cfg.now()
	// One statement claims the whole batch; a repeated id conflicts with
	// its own first row and is not returned.
	list, _ := json.Marshal(ids)
	rows, err := tx.StmtContext(ctx, s.claimManyStmt).QueryContext(ctx, string(list), s.cfg.Consumer, now.UnixMicro(), s.cfg.expiry(now).UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("dedupe: claim batch: %w", err)
	}
	mine := make(map[string]bool, len(ids))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		mine[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dedupe: claim batch: %w", err)
	}
	results := make([]Result, len(ids))
	for i, id := range ids {
		if !mine[id] {
			rec, err := s.countDuplicate(ctx, tx, id, now)
			if err != nil {
				return nil, err
			}
			results[i] = Result{Status: Duplicate, Record: rec}
			continue
		}
		delete(mine, id) // a second occurrence in the batch is a duplicate
		if err := run(ctx, tx, i); err != nil {
			return nil, err
		}
		results[i] = Result{Status: Processed, Record: s.fresh(id, outcomeProcessed, now)}
	}
	if err := s.storeOffset(ctx, tx, pos); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("dedupe: commit: %w", err)
	}
	return results, nil
}
