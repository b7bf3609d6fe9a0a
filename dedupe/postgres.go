package dedupe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the store for PostgreSQL through pgx v5. The handler receives
// the pgx.Tx of a READ COMMITTED transaction whose first statement claimed
// the event id.
//
// Concurrency comes from the primary key: a second transaction inserting the
// same id blocks on the first one's uncommitted row. If the first commits,
// the second sees the conflict and reports a duplicate; if it rolls back, the
// second's insert proceeds and its handler runs. Different ids never wait for
// each other, so throughput scales with the pool.
type Postgres struct {
	cfg  Config
	pool *pgxpool.Pool
	q    queries
}

// NewPostgres uses pool (owned by the caller, who closes it) and creates the
// processed-ids table if it does not exist. The table lives in the pool's
// search_path, next to the application's tables.
func NewPostgres(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Postgres, error) {
	cfg = cfg.withDefaults()
	if err := validIdent(cfg.Table); err != nil {
		return nil, err
	}
	t := cfg.Table
	s := &Postgres{cfg: cfg, pool: pool}
	claimSQL := `INSERT INTO ` + t + ` AS t (event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at)
			VALUES ($1, $2, $3, $4, 0, NULL, $5)
			ON CONFLICT (event_id) DO UPDATE SET consumer = excluded.consumer, outcome = excluded.outcome,
				processed_at = excluded.processed_at, duplicates = 0, last_duplicate_at = NULL, expires_at = excluded.expires_at
			WHERE t.expires_at <= excluded.processed_at
			RETURNING event_id`
	s.q = queries{
		claim: claimSQL,
		dup: `UPDATE ` + t + ` SET duplicates = duplicates + 1, last_duplicate_at = $1 WHERE event_id = $2
			RETURNING event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at`,
		lookup: `SELECT event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at
			FROM ` + t + ` WHERE event_id = $1 AND expires_at > $2`,
		// SKIP LOCKED: cleanup never waits for, nor blocks, a claim that is
		// reviving an expired row.
		cleanup: `DELETE FROM ` + t + ` WHERE event_id IN (
			SELECT event_id FROM ` + t + ` WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		storeOffset: storeOffsetSQL(t),
		loadOffsets: loadOffsetsSQL(t),
		claimOffset: `WITH stored_offset AS (` + strings.NewReplacer("$1", "$6", "$2", "$7", "$3", "$8", "$4", "$9").Replace(storeOffsetSQL(t)) + `)
			` + claimSQL,
		// Batch forms: one round trip claims, or counts duplicates of, a
		// whole batch of ids.
		claimMany: `INSERT INTO ` + t + ` AS t (event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at)
			SELECT id, $2, 'processed', $3, 0, NULL, $4 FROM unnest($1::text[]) AS id
			ON CONFLICT (event_id) DO UPDATE SET consumer = excluded.consumer, outcome = excluded.outcome,
				processed_at = excluded.processed_at, duplicates = 0, last_duplicate_at = NULL, expires_at = excluded.expires_at
			WHERE t.expires_at <= excluded.processed_at
			RETURNING event_id`,
		dupMany: `UPDATE ` + t + ` AS t SET duplicates = t.duplicates + d.n, last_duplicate_at = $1
			FROM unnest($2::text[], $3::bigint[]) AS d(id, n) WHERE t.event_id = d.id
			RETURNING t.event_id, t.consumer, t.outcome, t.processed_at, t.duplicates, t.last_duplicate_at, t.expires_at`,
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// migrate is idempotent. CREATE TABLE IF NOT EXISTS is not safe against a
// concurrent identical CREATE (both can pass the check), so migrations take a
// transaction-scoped advisory lock first.
func (s *Postgres) migrate(ctx context.Context) error {
	t := s.cfg.Table
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, stmt := range []string{
			`SELECT pg_advisory_xact_lock(hashtext('idem.dedupe.migrate'))`,
			`CREATE TABLE IF NOT EXISTS ` + t + ` (
				event_id          text PRIMARY KEY,
				consumer          text NOT NULL,
				outcome           text NOT NULL,
				processed_at      timestamptz NOT NULL,
				duplicates        bigint NOT NULL DEFAULT 0,
				last_duplicate_at timestamptz,
				expires_at        timestamptz NOT NULL
			)`,
			`CREATE INDEX IF NOT EXISTS ` + t + `_expires_at ON ` + t + ` (expires_at)`,
			offsetsDDL(t),
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("dedupe: migrate: %w", err)
			}
		}
		return nil
	})
}

// Pool returns the pool the store uses.
func (s *Postgres) Pool() *pgxpool.Pool { return s.pool }

// Close does nothing: the pool belongs to the caller. It exists to satisfy
// Store.
func (s *Postgres) Close() error { return nil }

// Process has the contract of [SQLite.Process]. With Config.LockTimeout set, a
// delivery that waits longer than that for a concurrent delivery of the same
// id gives up with ErrInProgress.
func (s *Postgres) Process(ctx context.Context, eventID string, h Handler[pgx.Tx]) (Result, error) {
	return s.process(ctx, eventID, nil, h)
}

func (s *Postgres) process(ctx context.Context, eventID string, pos *position, h Handler[pgx.Tx]) (Result, error) {
	if eventID == "" {
		return Result{}, ErrEmptyEventID
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	// Rollback after Commit is a no-op; this also covers a handler panic.
	defer tx.Rollback(context.WithoutCancel(ctx))
	if s.cfg.LockTimeout > 0 {
		// SET LOCAL cannot take a bind parameter; the value is an integer we format.
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", s.cfg.LockTimeout.Milliseconds())); err != nil {
			return Result{}, fmt.Errorf("dedupe: set lock_timeout: %w", err)
		}
	}
	now := s.cfg.now()
	claimed, err := s.claim(ctx, tx, eventID, outcomeProcessed, now, pos)
	if err != nil {
		return Result{}, err
	}
	if !claimed {
		rec, err := s.countDuplicate(ctx, tx, eventID, now)
		if err != nil {
			return Result{}, err
		}
		if err := tx.Commit(ctx); err != nil {
			return Result{}, fmt.Errorf("dedupe: commit duplicate: %w", err)
		}
		return Result{Status: Duplicate, Record: rec}, nil
	}
	if herr := h(ctx, tx); herr != nil {
		if rerr := tx.Rollback(context.WithoutCancel(ctx)); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
			return Result{}, errors.Join(herr, rerr)
		}
		if IsPermanent(herr) {
			return s.reject(ctx, eventID, pos, herr)
		}
		return Result{}, herr
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, fmt.Errorf("dedupe: commit: %w", err)
	}
	return Result{Status: Processed, Record: s.fresh(eventID, outcomeProcessed, now)}, nil
}

func (s *Postgres) reject(ctx context.Context, eventID string, pos *position, herr error) (Result, error) {
	var res Result
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now := s.cfg.now()
		outcome := rejectedOutcome(herr)
		claimed, err := s.claim(ctx, tx, eventID, outcome, now, pos)
		if err != nil {
			return err
		}
		if claimed {
			res = Result{Status: Rejected, Record: s.fresh(eventID, outcome, now)}
			return nil
		}
		// Another delivery committed while ours was rolling back.
		rec, err := s.countDuplicate(ctx, tx, eventID, now)
		res = Result{Status: Duplicate, Record: rec}
		return err
	})
	if err != nil {
		return Result{}, errors.Join(herr, err)
	}
	return res, herr
}

func (s *Postgres) fresh(eventID, outcome string, now time.Time) Record {
	return Record{EventID: eventID, Consumer: s.cfg.Consumer, Outcome: outcome, ProcessedAt: now, ExpiresAt: s.cfg.expiry(now)}
}

// claim claims eventID and, when pos is set, stores the consumer's offset
// in the same statement (a data-modifying CTE), saving a round trip per
// record; the offset commits or rolls back with the rest of the transaction.
func (s *Postgres) claim(ctx context.Context, tx pgx.Tx, eventID, outcome string, now time.Time, pos *position) (bool, error) {
	var got string
	var row pgx.Row
	if pos == nil {
		row = tx.QueryRow(ctx, s.q.claim, eventID, s.cfg.Consumer, outcome, now, s.cfg.expiry(now))
	} else {
		row = tx.QueryRow(ctx, s.q.claimOffset, eventID, s.cfg.Consumer, outcome, now, s.cfg.expiry(now),
			pos.group, pos.topic, pos.partition, pos.next)
	}
	err := row.Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, pgErr("claim", eventID, err)
	}
	return true, nil
}

func (s *Postgres) countDuplicate(ctx context.Context, tx pgx.Tx, eventID string, now time.Time) (Record, error) {
	rec, err := scanPgRecord(tx.QueryRow(ctx, s.q.dup, now, eventID))
	if err != nil {
		return Record{}, pgErr("count duplicate", eventID, err)
	}
	return rec, nil
}

// pgErr maps lock_not_available (lock_timeout expired) to ErrInProgress.
func pgErr(op, eventID string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" {
		return fmt.Errorf("dedupe: %s %q: %w", op, eventID, ErrInProgress)
	}
	return fmt.Errorf("dedupe: %s %q: %w", op, eventID, err)
}

func scanPgRecord(row pgx.Row) (Record, error) {
	var rec Record
	var lastDup *time.Time
	if err := row.Scan(&rec.EventID, &rec.Consumer, &rec.Outcome, &rec.ProcessedAt, &rec.Duplicates, &lastDup, &rec.ExpiresAt); err != nil {
		return Record{}, err
	}
	rec.ProcessedAt = rec.ProcessedAt.UTC()
	if lastDup != nil {
		rec.LastDuplicateAt = lastDup.UTC()
	}
	rec.ExpiresAt = rec.ExpiresAt.UTC()
	if rec.ExpiresAt.Equal(forever) {
		rec.ExpiresAt = time.Time{}
	}
	return rec, nil
}

// Lookup returns the audit record of eventID, or ErrNotFound if there is none
// or it has expired.
func (s *Postgres) Lookup(ctx context.Context, eventID string) (Record, error) {
	rec, err := scanPgRecord(s.pool.QueryRow(ctx, s.q.lookup, eventID, s.cfg.now()))
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup %q: %w", eventID, err)
	}
	return rec, nil
}

// Cleanup deletes expired records, at most CleanupBatch per statement, until
// none are left or ctx is done. It returns how many rows it deleted.
func (s *Postgres) Cleanup(ctx context.Context) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tag, err := s.pool.Exec(ctx, s.q.cleanup, s.cfg.now(), s.cfg.CleanupBatch)
		if err != nil {
			return total, fmt.Errorf("dedupe: cleanup: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(s.cfg.CleanupBatch) {
			return total, nil
		}
	}
}

func (s *Postgres) storeOffset(ctx context.Context, tx pgx.Tx, pos *position) error {
	if pos == nil {
		return nil
	}
	if _, err := tx.Exec(ctx, s.q.storeOffset, pos.group, pos.topic, pos.partition, pos.next); err != nil {
		return fmt.Errorf("dedupe: store offset: %w", err)
	}
	return nil
}

func (s *Postgres) loadOffsets(ctx context.Context, group string) (map[string]map[int32]int64, error) {
	rows, err := s.pool.Query(ctx, s.q.loadOffsets, group)
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

// processBatch is SQLite.processBatch in four round trips plus the
// handlers': claim all ids, run the handlers of the claimed ones, count the
// duplicates, store the offset (then COMMIT). Ids are claimed in sorted
// order so two consumers claiming overlapping batches cannot deadlock.
func (s *Postgres) processBatch(ctx context.Context, ids []string, pos *position, run func(ctx context.Context, tx pgx.Tx, i int) error) ([]Result, error) {
	distinct := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" {
			return nil, ErrEmptyEventID
		}
		if !seen[id] {
			seen[id] = true
			distinct = append(distinct, id)
		}
	}
	slices.Sort(distinct)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("dedupe: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	now := s.cfg.now()
	rows, err := tx.Query(ctx, s.q.claimMany, distinct, s.cfg.Consumer, now, s.cfg.expiry(now))
	if err != nil {
		return nil, pgErr("claim batch", "", err)
	}
	claimed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, pgErr("claim batch", "", err)
	}
	mine := make(map[string]bool, len(claimed))
	for _, id := range claimed {
		mine[id] = true
	}
	results := make([]Result, len(ids))
	dups := map[string]int64{}
	for i, id := range ids {
		if !mine[id] {
			dups[id]++
			continue
		}
		delete(mine, id) // a second occurrence in the batch is a duplicate
		if err := run(ctx, tx, i); err != nil {
			return nil, err
		}
		results[i] = Result{Status: Processed, Record: s.fresh(id, outcomeProcessed, now)}
	}
	if len(dups) > 0 {
		dupIDs, counts := make([]string, 0, len(dups)), make([]int64, 0, len(dups))
		for _, id := range distinct {
			if n, ok := dups[id]; ok {
				dupIDs, counts = append(dupIDs, id), append(counts, n)
			}
		}
		rows, err := tx.Query(ctx, s.q.dupMany, now, dupIDs, counts)
		if err != nil {
			return nil, pgErr("count duplicates", "", err)
		}
		recs := map[string]Record{}
		for rows.Next() {
			rec, err := scanPgRecord(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			recs[rec.EventID] = rec
		}
		if err := rows.Err(); err != nil {
			return nil, pgErr("count duplicates", "", err)
		}
		for i, id := range ids {
			if results[i].Status == 0 {
				results[i] = Result{Status: Duplicate, Record: recs[id]}
			}
		}
	}
	if err := s.storeOffset(ctx, tx, pos); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("dedupe: commit: %w", err)
	}
	return results, nil
}

var _ OffsetStore[pgx.Tx] = (*Postgres)(nil)
