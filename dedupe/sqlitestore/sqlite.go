// Package sqlitestore is the embedded dedupe store: one SQLite database file
// (modernc.org/sqlite: pure Go, no cgo) that holds the processed ids, the
// consumer's offsets and dead letters, and the application's own tables.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/internal/storeutil"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// Store is the embedded store: one database file, no server, no cgo.
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
type Store struct {
	cfg   dedupe.Config
	w, r  *sql.DB
	q     queries
	table string
	// Statements prepared once on the writer connection: parsing the claim
	// upsert costs more than running it.
	claimStmt, claimManyStmt, dupStmt, offsetStmt *sql.Stmt
}

var _ dedupe.OffsetStore[*sql.Tx] = (*Store)(nil)

// queries are built once per store because the table name is configurable.
type queries struct {
	claim, dup, lookup, cleanup   string
	storeOffset, loadOffsets      string
	claimMany                     string
	insertDL, pendingDL, deleteDL string
}

// Schema returns the statements that create the store's tables for
// Config.Table (default "idem_processed"), for your migrations when
// Config.SkipSchema is set. They are idempotent (IF NOT EXISTS).
func Schema(table string) []string {
	if table == "" {
		table = "idem_processed"
	}
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + table + ` (
			event_id          TEXT PRIMARY KEY,
			consumer          TEXT NOT NULL,
			outcome           TEXT NOT NULL,
			processed_at      INTEGER NOT NULL, -- unix microseconds
			duplicates        INTEGER NOT NULL DEFAULT 0,
			last_duplicate_at INTEGER,
			expires_at        INTEGER NOT NULL
		) WITHOUT ROWID`, // one B-tree keyed by event_id, not a rowid table plus a key index
		`CREATE INDEX IF NOT EXISTS ` + table + `_expires_at ON ` + table + ` (expires_at)`,
		storeutil.OffsetsDDL(table),
		storeutil.DeadLettersDDL(table, "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "INTEGER"),
	}
}

// Open opens (creating if needed) the database file at path and the store's
// tables in it. The file may hold the application's own tables too: that is
// the point, since the handler's writes and the claim must share one
// transaction. Synchronous=FULL makes every Process durable on return.
func Open(ctx context.Context, path string, cfg dedupe.Config) (*Store, error) {
	cfg, err := storeutil.Defaults(cfg)
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
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", base+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	s := &Store{cfg: cfg, w: w, r: r, table: cfg.Table}
	t := s.table
	s.q = queries{
		// The claim is an upsert that only overwrites an expired record, so
		// "expired" means exactly "absent" without waiting for Cleanup.
		claim: `INSERT INTO ` + t + ` (event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at)
			VALUES (?, ?, ?, ?, 0, NULL, ?)
			ON CONFLICT (event_id) DO UPDATE SET consumer = excluded.consumer, outcome = excluded.outcome,
				processed_at = excluded.processed_at, duplicates = 0, last_duplicate_at = NULL, expires_at = excluded.expires_at
			WHERE ` + t + `.expires_at <= excluded.processed_at`,
		dup: `UPDATE ` + t + ` SET duplicates = duplicates + 1, last_duplicate_at = ? WHERE event_id = ?
			RETURNING event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at`,
		lookup: `SELECT event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at
			FROM ` + t + ` WHERE event_id = ? AND expires_at > ?`,
		cleanup:     `DELETE FROM ` + t + ` WHERE event_id IN (SELECT event_id FROM ` + t + ` WHERE expires_at <= ? LIMIT ?)`,
		storeOffset: storeutil.StoreOffsetSQL(t),
		loadOffsets: storeutil.LoadOffsetsSQL(t),
		// The ids arrive as one JSON array. "WHERE true" resolves SQLite's
		// INSERT … SELECT … ON CONFLICT parsing ambiguity.
		claimMany: `INSERT INTO ` + t + ` (event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at)
			SELECT value, ?2, 'processed', ?3, 0, NULL, ?4 FROM json_each(?1) WHERE true
			ON CONFLICT (event_id) DO UPDATE SET consumer = excluded.consumer, outcome = excluded.outcome,
				processed_at = excluded.processed_at, duplicates = 0, last_duplicate_at = NULL, expires_at = excluded.expires_at
			WHERE ` + t + `.expires_at <= excluded.processed_at
			RETURNING event_id`,
		insertDL:  storeutil.InsertDeadLetterSQL(t),
		pendingDL: storeutil.PendingDeadLettersSQL(t),
		deleteDL:  storeutil.DeleteDeadLetterSQL(t),
	}
	if !cfg.SkipSchema {
		if err := s.migrate(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{{&s.claimStmt, s.q.claim}, {&s.claimManyStmt, s.q.claimMany}, {&s.dupStmt, s.q.dup}, {&s.offsetStmt, s.q.storeOffset}} {
		if *p.stmt, err = w.PrepareContext(ctx, p.sql); err != nil {
			s.Close()
			return nil, fmt.Errorf("dedupe: prepare (are the tables of sqlitestore.Schema there?): %w", err)
		}
	}
	return s, nil
}

// migrate is idempotent: every statement is IF NOT EXISTS, and it runs under
// the write lock so two processes opening one file do not race.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("dedupe: migrate: %w", err)
	}
	defer tx.Rollback()
	for _, stmt := range Schema(s.table) {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("dedupe: migrate: %w", err)
		}
	}
	return tx.Commit()
}

// DB returns the writer handle, for the application's own migrations and
// writes outside Process. Do not use it from inside a handler.
func (s *Store) DB() *sql.DB { return s.w }

// Close closes both connection pools.
func (s *Store) Close() error {
	for _, st := range []*sql.Stmt{s.claimStmt, s.claimManyStmt, s.dupStmt, s.offsetStmt} {
		if st != nil {
			st.Close()
		}
	}
	return errors.Join(s.w.Close(), s.r.Close())
}

// Process has the contract of dedupe.Store.Process.
func (s *Store) Process(ctx context.Context, eventID string, h dedupe.Handler[*sql.Tx]) (dedupe.Result, error) {
	return s.process(ctx, eventID, nil, h)
}

// ProcessAt has the contract of dedupe.OffsetStore.ProcessAt.
func (s *Store) ProcessAt(ctx context.Context, eventID string, pos dedupe.Position, h dedupe.Handler[*sql.Tx]) (dedupe.Result, error) {
	return s.process(ctx, eventID, &pos, h)
}

// process is Process that, if pos is not nil, also stores the consumer's
// next offset in the same transaction, whatever the outcome.
func (s *Store) process(ctx context.Context, eventID string, pos *dedupe.Position, h dedupe.Handler[*sql.Tx]) (dedupe.Result, error) {
	if eventID == "" {
		return dedupe.Result{}, dedupe.ErrEmptyEventID
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return dedupe.Result{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	defer tx.Rollback() // no-op after Commit; runs on a handler panic
	now := storeutil.Now(s.cfg)
	claimed, err := s.claim(ctx, tx, eventID, "processed", now)
	if err != nil {
		return dedupe.Result{}, err
	}
	if !claimed {
		rec, err := s.countDuplicate(ctx, tx, eventID, now)
		if err != nil {
			return dedupe.Result{}, err
		}
		if err := s.storeOffset(ctx, tx, pos); err != nil {
			return dedupe.Result{}, err
		}
		if err := tx.Commit(); err != nil {
			return dedupe.Result{}, fmt.Errorf("dedupe: commit duplicate: %w", err)
		}
		return dedupe.Result{Status: dedupe.Duplicate, Record: rec}, nil
	}
	herr := h(ctx, tx)
	if herr == nil {
		herr = s.storeOffset(ctx, tx, pos)
	}
	if herr != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return dedupe.Result{}, errors.Join(herr, rerr)
		}
		if dedupe.IsPermanent(herr) {
			res, err := s.reject(ctx, eventID, pos, storeutil.RejectedOutcome(herr), nil)
			if err != nil {
				return dedupe.Result{}, errors.Join(herr, err)
			}
			return res, herr
		}
		return dedupe.Result{}, herr
	}
	if err := tx.Commit(); err != nil {
		return dedupe.Result{}, fmt.Errorf("dedupe: commit: %w", err)
	}
	return dedupe.Result{Status: dedupe.Processed, Record: s.fresh(eventID, "processed", now)}, nil
}

// RejectAt has the contract of dedupe.OffsetStore.RejectAt.
func (s *Store) RejectAt(ctx context.Context, eventID string, pos dedupe.Position, outcome string, dl *dedupe.DeadLetter) (dedupe.Result, error) {
	if eventID == "" {
		return dedupe.Result{}, dedupe.ErrEmptyEventID
	}
	return s.reject(ctx, eventID, &pos, outcome, dl)
}

// reject records a given-up event in its own transaction, after the
// handler's writes were rolled back.
func (s *Store) reject(ctx context.Context, eventID string, pos *dedupe.Position, outcome string, dl *dedupe.DeadLetter) (dedupe.Result, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return dedupe.Result{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	defer tx.Rollback()
	now := storeutil.Now(s.cfg)
	claimed, err := s.claim(ctx, tx, eventID, outcome, now)
	if err != nil {
		return dedupe.Result{}, err
	}
	status := dedupe.Rejected
	if dl != nil {
		status = dedupe.DeadLettered
	}
	res := dedupe.Result{Status: status, Record: s.fresh(eventID, outcome, now)}
	if !claimed { // another process committed this id meanwhile
		rec, err := s.countDuplicate(ctx, tx, eventID, now)
		if err != nil {
			return dedupe.Result{}, err
		}
		res = dedupe.Result{Status: dedupe.Duplicate, Record: rec}
	} else if dl != nil {
		if _, err := tx.ExecContext(ctx, s.q.insertDL, dl.Group, dl.EventID, dl.Topic, dl.Key, dl.Value,
			storeutil.EncodeHeaders(dl.Headers), now.UnixMicro()); err != nil {
			return dedupe.Result{}, fmt.Errorf("dedupe: dead letter: %w", err)
		}
	}
	if err := s.storeOffset(ctx, tx, pos); err != nil {
		return dedupe.Result{}, err
	}
	if err := tx.Commit(); err != nil {
		return dedupe.Result{}, fmt.Errorf("dedupe: commit: %w", err)
	}
	return res, nil
}

func (s *Store) fresh(eventID, outcome string, now time.Time) dedupe.Record {
	return dedupe.Record{EventID: eventID, Consumer: s.cfg.Consumer, Outcome: outcome, ProcessedAt: now, ExpiresAt: expiresAt(storeutil.Expiry(s.cfg, now))}
}

func expiresAt(t time.Time) time.Time {
	if t.Equal(storeutil.Forever) {
		return time.Time{}
	}
	return t
}

func (s *Store) claim(ctx context.Context, tx *sql.Tx, eventID, outcome string, now time.Time) (bool, error) {
	// An upsert whose DO UPDATE is skipped by its WHERE changes no row, so
	// RowsAffected tells claimed from duplicate without a result set.
	res, err := tx.StmtContext(ctx, s.claimStmt).ExecContext(ctx, eventID, s.cfg.Consumer, outcome, now.UnixMicro(), storeutil.Expiry(s.cfg, now).UnixMicro())
	if err != nil {
		return false, fmt.Errorf("dedupe: claim %q: %w", eventID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("dedupe: claim %q: %w", eventID, err)
	}
	return n == 1, nil
}

func (s *Store) countDuplicate(ctx context.Context, tx *sql.Tx, eventID string, now time.Time) (dedupe.Record, error) {
	rec, err := scanRecord(tx.StmtContext(ctx, s.dupStmt).QueryRowContext(ctx, now.UnixMicro(), eventID))
	if err != nil {
		return dedupe.Record{}, fmt.Errorf("dedupe: count duplicate %q: %w", eventID, err)
	}
	return rec, nil
}

func scanRecord(row *sql.Row) (dedupe.Record, error) {
	var rec dedupe.Record
	var processed, expires int64
	var lastDup sql.NullInt64
	if err := row.Scan(&rec.EventID, &rec.Consumer, &rec.Outcome, &processed, &rec.Duplicates, &lastDup, &expires); err != nil {
		return dedupe.Record{}, err
	}
	rec.ProcessedAt = time.UnixMicro(processed).UTC()
	if lastDup.Valid {
		rec.LastDuplicateAt = time.UnixMicro(lastDup.Int64).UTC()
	}
	rec.ExpiresAt = expiresAt(time.UnixMicro(expires).UTC())
	return rec, nil
}

// Lookup returns the audit record of eventID, or ErrNotFound if there is none
// or it has expired.
func (s *Store) Lookup(ctx context.Context, eventID string) (dedupe.Record, error) {
	rec, err := scanRecord(s.r.QueryRowContext(ctx, s.q.lookup, eventID, storeutil.Now(s.cfg).UnixMicro()))
	if errors.Is(err, sql.ErrNoRows) {
		return dedupe.Record{}, dedupe.ErrNotFound
	}
	if err != nil {
		return dedupe.Record{}, fmt.Errorf("dedupe: lookup %q: %w", eventID, err)
	}
	return rec, nil
}

// Cleanup deletes the records expired at now, at most CleanupBatch per
// transaction so the writer lock is held only briefly, until none are left
// or ctx is done. It returns how many rows it deleted.
func (s *Store) Cleanup(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		res, err := s.w.ExecContext(ctx, s.q.cleanup, storeutil.Micro(now).UnixMicro(), s.cfg.CleanupBatch)
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

func (s *Store) storeOffset(ctx context.Context, tx *sql.Tx, pos *dedupe.Position) error {
	if pos == nil {
		return nil
	}
	if _, err := tx.StmtContext(ctx, s.offsetStmt).ExecContext(ctx, pos.Group, pos.Topic, pos.Partition, pos.Next); err != nil {
		return fmt.Errorf("dedupe: store offset: %w", err)
	}
	return nil
}

// LoadOffsets has the contract of dedupe.OffsetStore.LoadOffsets.
func (s *Store) LoadOffsets(ctx context.Context, group string) (map[string]map[int32]int64, error) {
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

// PendingDeadLetters has the contract of dedupe.OffsetStore.PendingDeadLetters.
func (s *Store) PendingDeadLetters(ctx context.Context, group string, limit int) ([]dedupe.DeadLetter, error) {
	rows, err := s.r.QueryContext(ctx, s.q.pendingDL, group, limit)
	if err != nil {
		return nil, fmt.Errorf("dedupe: pending dead letters: %w", err)
	}
	defer rows.Close()
	var out []dedupe.DeadLetter
	for rows.Next() {
		var dl dedupe.DeadLetter
		var headers string
		if err := rows.Scan(&dl.ID, &dl.Group, &dl.EventID, &dl.Topic, &dl.Key, &dl.Value, &headers); err != nil {
			return nil, err
		}
		if dl.Headers, err = storeutil.DecodeHeaders(headers); err != nil {
			return nil, err
		}
		out = append(out, dl)
	}
	return out, rows.Err()
}

// DeleteDeadLetter has the contract of dedupe.OffsetStore.DeleteDeadLetter.
func (s *Store) DeleteDeadLetter(ctx context.Context, id int64) error {
	if _, err := s.w.ExecContext(ctx, s.q.deleteDL, id); err != nil {
		return fmt.Errorf("dedupe: delete dead letter: %w", err)
	}
	return nil
}

// ProcessBatchAt has the contract of dedupe.OffsetStore.ProcessBatchAt: one
// commit (one fsync) for the batch.
func (s *Store) ProcessBatchAt(ctx context.Context, ids []string, pos dedupe.Position, run func(ctx context.Context, tx *sql.Tx, i int) error) ([]dedupe.Result, error) {
	return s.ProcessClaimedAt(ctx, ids, pos, func(ctx context.Context, tx *sql.Tx, claimed []int) error {
		for _, i := range claimed {
			if err := run(ctx, tx, i); err != nil {
				return err
			}
		}
		return nil
	})
}

// ProcessClaimedAt has the contract of dedupe.ClaimedBatchStore.ProcessClaimedAt:
// ProcessBatchAt with one call of run for the whole batch.
func (s *Store) ProcessClaimedAt(ctx context.Context, ids []string, pos dedupe.Position, run func(ctx context.Context, tx *sql.Tx, claimed []int) error) ([]dedupe.Result, error) {
	return s.ProcessClaimedAtPositions(ctx, ids, []dedupe.Position{pos}, run)
}

// ProcessClaimedAtPositions has the contract of
// dedupe.PollBatchStore.ProcessClaimedAtPositions: this store's
// transactions queue for its one writer connection, so one per poll is
// better than one per partition.
func (s *Store) ProcessClaimedAtPositions(ctx context.Context, ids []string, positions []dedupe.Position, run func(ctx context.Context, tx *sql.Tx, claimed []int) error) ([]dedupe.Result, error) {
	for _, id := range ids {
		if id == "" {
			return nil, dedupe.ErrEmptyEventID
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("dedupe: begin: %w", err)
	}
	defer tx.Rollback()
	now := storeutil.Now(s.cfg)
	// One statement claims the whole batch; a repeated id conflicts with
	// its own first row and is not returned.
	list, _ := json.Marshal(ids)
	rows, err := tx.StmtContext(ctx, s.claimManyStmt).QueryContext(ctx, string(list), s.cfg.Consumer, now.UnixMicro(), storeutil.Expiry(s.cfg, now).UnixMicro())
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
	results := make([]dedupe.Result, len(ids))
	var claimedAt []int
	for i, id := range ids {
		if !mine[id] {
			rec, err := s.countDuplicate(ctx, tx, id, now)
			if err != nil {
				return nil, err
			}
			results[i] = dedupe.Result{Status: dedupe.Duplicate, Record: rec}
			continue
		}
		delete(mine, id) // a second occurrence in the batch is a duplicate
		claimedAt = append(claimedAt, i)
		results[i] = dedupe.Result{Status: dedupe.Processed, Record: s.fresh(id, "processed", now)}
	}
	if len(claimedAt) > 0 {
		if err := run(ctx, tx, claimedAt); err != nil {
			return nil, err
		}
	}
	for i := range positions {
		if err := s.storeOffset(ctx, tx, &positions[i]); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("dedupe: commit: %w", err)
	}
	return results, nil
}

var _ dedupe.PollBatchStore[*sql.Tx] = (*Store)(nil)
