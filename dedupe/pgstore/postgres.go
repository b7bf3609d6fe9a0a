// Package pgstore is the dedupe store for PostgreSQL, through pgx v5: the
// processed ids, the consumer's offsets and dead letters live next to the
// application's tables, in the pool's search_path.
package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/internal/storeutil"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// queries are built once per store because the table name is configurable.
type queries struct {
	claim, dup, lookup, cleanup   string
	storeOffset, loadOffsets      string
	claimMany, dupMany            string
	claimManyOffsets              string // claimMany that also stores the positions
	claimOffset                   string // claim and store the offset in one statement
	insertDL, pendingDL, deleteDL string
}

// Schema returns the statements that create the store's tables for
// Config.Table (default "idem_processed"), for your migrations when
// Config.SkipSchema is set. They are idempotent (IF NOT EXISTS).
func Schema(table string) []string {
	if table == "" {
		table = "idem_processed"
	}
	t := table
	return []string{
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
		storeutil.OffsetsDDL(t),
		storeutil.DeadLettersDDL(t, "bigserial PRIMARY KEY", "bytea", "timestamptz"),
	}
}

// Store is the store for PostgreSQL through pgx v5. The handler receives
// the pgx.Tx of a READ COMMITTED transaction whose first statement claimed
// the event id.
//
// Concurrency comes from the primary key: a second transaction inserting the
// same id blocks on the first one's uncommitted row. If the first commits,
// the second sees the conflict and reports a duplicate; if it rolls back, the
// second's insert proceeds and its handler runs. Different ids never wait for
// each other, so throughput scales with the pool.
type Store struct {
	cfg  dedupe.Config
	pool *pgxpool.Pool
	q    queries
}

// New uses pool (owned by the caller, who closes it) and creates the store's
// tables if they do not exist (unless Config.SkipSchema). They live in the
// pool's search_path, next to the application's tables.
func New(ctx context.Context, pool *pgxpool.Pool, cfg dedupe.Config) (*Store, error) {
	cfg, err := storeutil.Defaults(cfg)
	if err != nil {
		return nil, err
	}
	t := cfg.Table
	s := &Store{cfg: cfg, pool: pool}
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
		storeOffset: storeutil.StoreOffsetSQL(t),
		loadOffsets: storeutil.LoadOffsetsSQL(t),
		insertDL:    storeutil.InsertDeadLetterSQL(t),
		pendingDL:   storeutil.PendingDeadLettersSQL(t),
		deleteDL:    storeutil.DeleteDeadLetterSQL(t),
		claimOffset: `WITH stored_offset AS (` + strings.NewReplacer("$1", "$6", "$2", "$7", "$3", "$8", "$4", "$9").Replace(storeutil.StoreOffsetSQL(t)) + `)
			` + claimSQL,
		// Batch forms: one round trip claims, or counts duplicates of, a
		// whole batch of ids.
		claimMany: `INSERT INTO ` + t + ` AS t (event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at)
			SELECT id, $2, 'processed', $3, 0, NULL, $4 FROM unnest($1::text[]) AS id
			ON CONFLICT (event_id) DO UPDATE SET consumer = excluded.consumer, outcome = excluded.outcome,
				processed_at = excluded.processed_at, duplicates = 0, last_duplicate_at = NULL, expires_at = excluded.expires_at
			WHERE t.expires_at <= excluded.processed_at
			RETURNING event_id`,
		// claimMany and the batch's positions (one per partition) in one
		// statement: a poll of several partitions costs one round trip for
		// the claim and the offsets instead of one plus one per partition.
		claimManyOffsets: `WITH stored_offsets AS (
				INSERT INTO ` + t + `_offsets AS o (consumer_group, topic, partition_id, next_offset)
				SELECT * FROM unnest($5::text[], $6::text[], $7::int[], $8::bigint[])
				ON CONFLICT (consumer_group, topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset
				WHERE o.next_offset < excluded.next_offset)
			INSERT INTO ` + t + ` AS t (event_id, consumer, outcome, processed_at, duplicates, last_duplicate_at, expires_at)
			SELECT id, $2, 'processed', $3, 0, NULL, $4 FROM unnest($1::text[]) AS id
			ON CONFLICT (event_id) DO UPDATE SET consumer = excluded.consumer, outcome = excluded.outcome,
				processed_at = excluded.processed_at, duplicates = 0, last_duplicate_at = NULL, expires_at = excluded.expires_at
			WHERE t.expires_at <= excluded.processed_at
			RETURNING event_id`,
		dupMany: `UPDATE ` + t + ` AS t SET duplicates = t.duplicates + d.n, last_duplicate_at = $1
			FROM unnest($2::text[], $3::bigint[]) AS d(id, n) WHERE t.event_id = d.id
			RETURNING t.event_id, t.consumer, t.outcome, t.processed_at, t.duplicates, t.last_duplicate_at, t.expires_at`,
	}
	if !cfg.SkipSchema {
		if err := s.migrate(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// migrate is idempotent. CREATE TABLE IF NOT EXISTS is not safe against a
// concurrent identical CREATE (both can pass the check), so migrations take a
// transaction-scoped advisory lock first.
func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		stmts := append([]string{`SELECT pg_advisory_xact_lock(hashtext('idem.dedupe.migrate'))`}, Schema(s.cfg.Table)...)
		for _, stmt := range stmts {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("dedupe: migrate: %w", err)
			}
		}
		return nil
	})
}

// Pool returns the pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close does nothing: the pool belongs to the caller. It exists to satisfy
// Store.
func (s *Store) Close() error { return nil }

// Process has the contract of dedupe.Store.Process. With Config.LockTimeout
// set, a delivery that waits longer than that for a concurrent delivery of
// the same id gives up with dedupe.ErrInProgress.
func (s *Store) Process(ctx context.Context, eventID string, h dedupe.Handler[pgx.Tx]) (dedupe.Result, error) {
	return s.process(ctx, eventID, nil, h)
}

// ProcessAt has the contract of dedupe.OffsetStore.ProcessAt.
func (s *Store) ProcessAt(ctx context.Context, eventID string, pos dedupe.Position, h dedupe.Handler[pgx.Tx]) (dedupe.Result, error) {
	return s.process(ctx, eventID, &pos, h)
}

// RejectAt has the contract of dedupe.OffsetStore.RejectAt.
func (s *Store) RejectAt(ctx context.Context, eventID string, pos dedupe.Position, outcome string, dl *dedupe.DeadLetter) (dedupe.Result, error) {
	if eventID == "" {
		return dedupe.Result{}, dedupe.ErrEmptyEventID
	}
	return s.reject(ctx, eventID, &pos, outcome, dl)
}

func (s *Store) process(ctx context.Context, eventID string, pos *dedupe.Position, h dedupe.Handler[pgx.Tx]) (dedupe.Result, error) {
	if eventID == "" {
		return dedupe.Result{}, dedupe.ErrEmptyEventID
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return dedupe.Result{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	// Rollback after Commit is a no-op; this also covers a handler panic.
	defer tx.Rollback(context.WithoutCancel(ctx))
	if s.cfg.LockTimeout > 0 {
		// SET LOCAL cannot take a bind parameter; the value is an integer we format.
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", s.cfg.LockTimeout.Milliseconds())); err != nil {
			return dedupe.Result{}, fmt.Errorf("dedupe: set lock_timeout: %w", err)
		}
	}
	now := storeutil.Now(s.cfg)
	claimed, err := s.claim(ctx, tx, eventID, "processed", now, pos)
	if err != nil {
		return dedupe.Result{}, err
	}
	if !claimed {
		rec, err := s.countDuplicate(ctx, tx, eventID, now)
		if err != nil {
			return dedupe.Result{}, err
		}
		if err := tx.Commit(ctx); err != nil {
			return dedupe.Result{}, fmt.Errorf("dedupe: commit duplicate: %w", err)
		}
		return dedupe.Result{Status: dedupe.Duplicate, Record: rec}, nil
	}
	if herr := h(ctx, tx); herr != nil {
		if rerr := tx.Rollback(context.WithoutCancel(ctx)); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
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
	if err := tx.Commit(ctx); err != nil {
		return dedupe.Result{}, fmt.Errorf("dedupe: commit: %w", err)
	}
	return dedupe.Result{Status: dedupe.Processed, Record: s.fresh(eventID, "processed", now)}, nil
}

func (s *Store) reject(ctx context.Context, eventID string, pos *dedupe.Position, outcome string, dl *dedupe.DeadLetter) (dedupe.Result, error) {
	var res dedupe.Result
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now := storeutil.Now(s.cfg)
		claimed, err := s.claim(ctx, tx, eventID, outcome, now, pos)
		if err != nil {
			return err
		}
		if !claimed {
			// Another delivery committed while ours was rolling back.
			rec, err := s.countDuplicate(ctx, tx, eventID, now)
			res = dedupe.Result{Status: dedupe.Duplicate, Record: rec}
			if err == nil {
				err = s.storeOffset(ctx, tx, pos)
			}
			return err
		}
		res = dedupe.Result{Status: dedupe.Rejected, Record: s.fresh(eventID, outcome, now)}
		if dl != nil {
			res.Status = dedupe.DeadLettered
			if _, err := tx.Exec(ctx, s.q.insertDL, dl.Group, dl.EventID, dl.Topic, dl.Key, dl.Value,
				storeutil.EncodeHeaders(dl.Headers), now); err != nil {
				return fmt.Errorf("dedupe: dead letter: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return dedupe.Result{}, err
	}
	return res, nil
}

// PendingDeadLetters has the contract of dedupe.OffsetStore.PendingDeadLetters.
func (s *Store) PendingDeadLetters(ctx context.Context, group string, limit int) ([]dedupe.DeadLetter, error) {
	rows, err := s.pool.Query(ctx, s.q.pendingDL, group, limit)
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
	if _, err := s.pool.Exec(ctx, s.q.deleteDL, id); err != nil {
		return fmt.Errorf("dedupe: delete dead letter: %w", err)
	}
	return nil
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

// claim claims eventID and, when pos is set, stores the consumer's offset
// in the same statement (a data-modifying CTE), saving a round trip per
// record; the offset commits or rolls back with the rest of the transaction.
func (s *Store) claim(ctx context.Context, tx pgx.Tx, eventID, outcome string, now time.Time, pos *dedupe.Position) (bool, error) {
	var got string
	var row pgx.Row
	if pos == nil {
		row = tx.QueryRow(ctx, s.q.claim, eventID, s.cfg.Consumer, outcome, now, storeutil.Expiry(s.cfg, now))
	} else {
		row = tx.QueryRow(ctx, s.q.claimOffset, eventID, s.cfg.Consumer, outcome, now, storeutil.Expiry(s.cfg, now),
			pos.Group, pos.Topic, pos.Partition, pos.Next)
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

func (s *Store) countDuplicate(ctx context.Context, tx pgx.Tx, eventID string, now time.Time) (dedupe.Record, error) {
	rec, err := scanPgRecord(tx.QueryRow(ctx, s.q.dup, now, eventID))
	if err != nil {
		return dedupe.Record{}, pgErr("count duplicate", eventID, err)
	}
	return rec, nil
}

// pgErr maps lock_not_available (lock_timeout expired) to ErrInProgress.
func pgErr(op, eventID string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" {
		return fmt.Errorf("dedupe: %s %q: %w", op, eventID, dedupe.ErrInProgress)
	}
	return fmt.Errorf("dedupe: %s %q: %w", op, eventID, err)
}

func scanPgRecord(row pgx.Row) (dedupe.Record, error) {
	var rec dedupe.Record
	var lastDup *time.Time
	if err := row.Scan(&rec.EventID, &rec.Consumer, &rec.Outcome, &rec.ProcessedAt, &rec.Duplicates, &lastDup, &rec.ExpiresAt); err != nil {
		return dedupe.Record{}, err
	}
	rec.ProcessedAt = rec.ProcessedAt.UTC()
	if lastDup != nil {
		rec.LastDuplicateAt = lastDup.UTC()
	}
	rec.ExpiresAt = expiresAt(rec.ExpiresAt.UTC())
	return rec, nil
}

// Lookup returns the audit record of eventID, or ErrNotFound if there is none
// or it has expired.
func (s *Store) Lookup(ctx context.Context, eventID string) (dedupe.Record, error) {
	rec, err := scanPgRecord(s.pool.QueryRow(ctx, s.q.lookup, eventID, storeutil.Now(s.cfg)))
	if errors.Is(err, pgx.ErrNoRows) {
		return dedupe.Record{}, dedupe.ErrNotFound
	}
	if err != nil {
		return dedupe.Record{}, fmt.Errorf("dedupe: lookup %q: %w", eventID, err)
	}
	return rec, nil
}

// Cleanup deletes the records expired at now, at most CleanupBatch per
// statement, until none are left or ctx is done. It returns how many rows it
// deleted.
func (s *Store) Cleanup(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tag, err := s.pool.Exec(ctx, s.q.cleanup, storeutil.Micro(now), s.cfg.CleanupBatch)
		if err != nil {
			return total, fmt.Errorf("dedupe: cleanup: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(s.cfg.CleanupBatch) {
			return total, nil
		}
	}
}

func (s *Store) storeOffset(ctx context.Context, tx pgx.Tx, pos *dedupe.Position) error {
	if pos == nil {
		return nil
	}
	if _, err := tx.Exec(ctx, s.q.storeOffset, pos.Group, pos.Topic, pos.Partition, pos.Next); err != nil {
		return fmt.Errorf("dedupe: store offset: %w", err)
	}
	return nil
}

// LoadOffsets has the contract of dedupe.OffsetStore.LoadOffsets.
func (s *Store) LoadOffsets(ctx context.Context, group string) (map[string]map[int32]int64, error) {
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

// ProcessBatchAt has the contract of dedupe.OffsetStore.ProcessBatchAt, in
// three round trips plus the handlers': claim all ids and store the offset
// (one statement), run the handlers of the claimed ones, count the
// duplicates (then COMMIT).
// Ids are claimed in sorted order so two consumers claiming overlapping
// batches cannot deadlock.
func (s *Store) ProcessBatchAt(ctx context.Context, ids []string, pos dedupe.Position, run func(ctx context.Context, tx pgx.Tx, i int) error) ([]dedupe.Result, error) {
	return s.ProcessClaimedAt(ctx, ids, pos, func(ctx context.Context, tx pgx.Tx, claimed []int) error {
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
func (s *Store) ProcessClaimedAt(ctx context.Context, ids []string, pos dedupe.Position, run func(ctx context.Context, tx pgx.Tx, claimed []int) error) ([]dedupe.Result, error) {
	return s.ProcessClaimedAtPositions(ctx, ids, []dedupe.Position{pos}, run)
}

// ProcessClaimedAtPositions has the contract of
// dedupe.PollBatchStore.ProcessClaimedAtPositions.
func (s *Store) ProcessClaimedAtPositions(ctx context.Context, ids []string, positions []dedupe.Position, run func(ctx context.Context, tx pgx.Tx, claimed []int) error) ([]dedupe.Result, error) {
	distinct := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" {
			return nil, dedupe.ErrEmptyEventID
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
	now := storeutil.Now(s.cfg)
	groups, topics, parts, nexts := offsetArrays(positions)
	rows, err := tx.Query(ctx, s.q.claimManyOffsets, distinct, s.cfg.Consumer, now, storeutil.Expiry(s.cfg, now), groups, topics, parts, nexts)
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
	results := make([]dedupe.Result, len(ids))
	var claimedAt []int
	dups := map[string]int64{}
	for i, id := range ids {
		if !mine[id] {
			dups[id]++
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
		recs := map[string]dedupe.Record{}
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
				results[i] = dedupe.Result{Status: dedupe.Duplicate, Record: recs[id]}
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("dedupe: commit: %w", err)
	}
	return results, nil
}

// offsetArrays turns positions into the columns of claimManyOffsets, one
// row per partition (the furthest position if one occurs twice, which one
// INSERT … ON CONFLICT cannot update twice), sorted so that two
// transactions storing overlapping partitions lock their rows in the same
// order.
func offsetArrays(positions []dedupe.Position) (groups, topics []string, parts []int32, nexts []int64) {
	ps := slices.Clone(positions)
	slices.SortFunc(ps, func(a, b dedupe.Position) int {
		if c := strings.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Partition, b.Partition); c != 0 {
			return c
		}
		return cmp.Compare(b.Next, a.Next) // furthest first: the one kept
	})
	for i, p := range ps {
		if i > 0 && p.Group == ps[i-1].Group && p.Topic == ps[i-1].Topic && p.Partition == ps[i-1].Partition {
			continue
		}
		groups, topics, parts, nexts = append(groups, p.Group), append(topics, p.Topic), append(parts, p.Partition), append(nexts, p.Next)
	}
	return groups, topics, parts, nexts
}

var _ dedupe.OffsetStore[pgx.Tx] = (*Store)(nil)
var _ dedupe.PollBatchStore[pgx.Tx] = (*Store)(nil)
