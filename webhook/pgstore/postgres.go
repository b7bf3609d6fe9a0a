// Package pgstore is the dispatcher's store on PostgreSQL (pgx v5): the
// endpoints, messages, deliveries and attempt log next to the Kafka
// consumer's offsets and processed ids (dedupe/pgstore), so several
// dispatcher processes, on several hosts, share the work. Due deliveries
// are claimed with FOR UPDATE SKIP LOCKED and a lease: two dispatchers never
// claim the same delivery, and a dead one's claims expire.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/idem-dev/idem/dedupe"
	dedupepg "github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/webhook"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures the store. The zero value is usable.
type Config struct {
	// TablePrefix names the tables (default "idem_wh").
	TablePrefix string
	// Now is the clock of the processed-ids records (default time.Now).
	Now func() time.Time
	// Retention is how long processed Kafka event ids are kept (default 7
	// days).
	Retention time.Duration
}

// Store implements webhook.IngestStore[pgx.Tx].
type Store struct {
	dd   *dedupepg.Store
	pool *pgxpool.Pool
	t    tables
	q    queries
}

var _ webhook.IngestStore[pgx.Tx] = (*Store)(nil)

type tables struct{ endpoints, messages, deliveries, attempts string }

type queries struct {
	ingest, ingestBatch, claim string
}

// Schema returns the DDL of the dispatcher's tables (not the consumer's
// dedupe tables: dedupe/pgstore.Schema(prefix+"_processed")).
func Schema(prefix string) []string {
	if prefix == "" {
		prefix = "idem_wh"
	}
	p := prefix
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + p + `_endpoints (
			id text PRIMARY KEY,
			url text NOT NULL,
			description text NOT NULL DEFAULT '',
			event_types text[] NOT NULL DEFAULT '{}', -- empty: all
			ordered boolean NOT NULL DEFAULT false,
			enabled boolean NOT NULL DEFAULT true,
			disabled_reason text NOT NULL DEFAULT '',
			rate_limit double precision NOT NULL DEFAULT 0,
			max_in_flight integer NOT NULL DEFAULT 0,
			secrets jsonb NOT NULL,
			failing_since timestamptz,
			created_at timestamptz NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `_messages (
			id text PRIMARY KEY,
			event_type text NOT NULL,
			payload bytea NOT NULL,
			record_key bytea,
			topic text NOT NULL,
			partition integer NOT NULL,
			record_offset bigint NOT NULL,
			created_at timestamptz NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `_deliveries (
			id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- also the per-key order
			message_id text NOT NULL,
			endpoint_id text NOT NULL,
			order_key bytea,
			status text NOT NULL,
			attempts integer NOT NULL DEFAULT 0,
			next_attempt_at timestamptz NOT NULL,
			lease_token bigint,
			lease_until timestamptz,
			last_status integer NOT NULL DEFAULT 0,
			last_error text NOT NULL DEFAULT '',
			created_at timestamptz NOT NULL,
			updated_at timestamptz NOT NULL,
			UNIQUE (message_id, endpoint_id)
		)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_deliveries_due ON ` + p + `_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending'`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_deliveries_order ON ` + p + `_deliveries (endpoint_id, order_key, id) WHERE status = 'pending' AND order_key IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_deliveries_endpoint ON ` + p + `_deliveries (endpoint_id, status, created_at)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `_attempts (
			id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			delivery_id bigint NOT NULL,
			message_id text NOT NULL,
			endpoint_id text NOT NULL,
			attempt integer NOT NULL,
			outcome text NOT NULL,
			started_at timestamptz NOT NULL,
			latency_us bigint NOT NULL,
			status_code integer NOT NULL,
			error text NOT NULL,
			response text NOT NULL,
			dispatcher text NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_attempts_endpoint ON ` + p + `_attempts (endpoint_id, id)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_attempts_message ON ` + p + `_attempts (message_id)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_attempts_delivery ON ` + p + `_attempts (delivery_id)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_deliveries_finished ON ` + p + `_deliveries (updated_at) WHERE status = 'succeeded'`,
	}
}

// New uses pool (the caller's, who closes it) and creates the tables if
// they do not exist, in the pool's search_path.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = "idem_wh"
	}
	if err := validIdent(cfg.TablePrefix); err != nil {
		return nil, err
	}
	dd, err := dedupepg.New(ctx, pool, dedupe.Config{Table: cfg.TablePrefix + "_processed", Now: cfg.Now, Retention: cfg.Retention, Consumer: "webhooks"})
	if err != nil {
		return nil, err
	}
	p := cfg.TablePrefix
	s := &Store{dd: dd, pool: pool, t: tables{p + "_endpoints", p + "_messages", p + "_deliveries", p + "_attempts"}}
	s.q = queries{
		// One round trip: the message, then one delivery per subscribed
		// endpoint; those that can go at once are leased.
		ingest: `WITH m AS (
				INSERT INTO ` + p + `_messages (id, event_type, payload, record_key, topic, partition, record_offset, created_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING id)
			INSERT INTO ` + p + `_deliveries (message_id, endpoint_id, order_key, status, next_attempt_at, lease_token, lease_until, created_at, updated_at)
			SELECT m.id, e.id, CASE WHEN e.ordered THEN $4::bytea END, 'pending', $8,
				CASE WHEN e.enabled AND (NOT e.ordered OR $4::bytea IS NULL) AND NOT (e.id = ANY ($11::text[])) THEN $9::bigint END,
				CASE WHEN e.enabled AND (NOT e.ordered OR $4::bytea IS NULL) AND NOT (e.id = ANY ($11::text[])) THEN $10::timestamptz END, $8, $8
			FROM m, ` + p + `_endpoints e
			WHERE e.event_types = '{}' OR $2 = ANY (e.event_types)
			RETURNING id, endpoint_id, lease_token IS NOT NULL`,
		// A batch in one statement: the messages from arrays, then their
		// deliveries, numbered in record order (the per-key order).
		ingestBatch: `WITH input AS (
				SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], $6::int[], $7::bigint[])
					WITH ORDINALITY AS i (id, event_type, payload, record_key, topic, partition, record_offset, ord)),
			m AS (
				INSERT INTO ` + p + `_messages (id, event_type, payload, record_key, topic, partition, record_offset, created_at)
				SELECT id, event_type, payload, record_key, topic, partition, record_offset, $8 FROM input ORDER BY ord
				ON CONFLICT (id) DO NOTHING RETURNING id)
			INSERT INTO ` + p + `_deliveries (message_id, endpoint_id, order_key, status, next_attempt_at, lease_token, lease_until, created_at, updated_at)
			SELECT i.id, e.id, CASE WHEN e.ordered THEN i.record_key END, 'pending', $8,
				CASE WHEN e.enabled AND (NOT e.ordered OR i.record_key IS NULL) AND NOT (e.id = ANY ($11::text[])) THEN $9::bigint END,
				CASE WHEN e.enabled AND (NOT e.ordered OR i.record_key IS NULL) AND NOT (e.id = ANY ($11::text[])) THEN $10::timestamptz END, $8, $8
			FROM input i JOIN m ON m.id = i.id, ` + p + `_endpoints e
			WHERE e.event_types = '{}' OR i.event_type = ANY (e.event_types)
			ORDER BY i.ord, e.id
			RETURNING id, message_id, endpoint_id, lease_token IS NOT NULL`,
		// SKIP LOCKED: concurrent claimers take disjoint rows without
		// waiting. A successor of a key whose head another claimer has
		// locked is not due either: the head is still pending. The due
		// rows are looked up per enabled endpoint (LATERAL), so the backlog
		// of a disabled endpoint is never scanned.
		claim: `UPDATE ` + p + `_deliveries d SET lease_token = $1, lease_until = $2
			FROM (
				SELECT c.id FROM ` + p + `_endpoints e CROSS JOIN LATERAL (
					SELECT c.id, c.next_attempt_at FROM ` + p + `_deliveries c
					WHERE c.endpoint_id = e.id AND c.status = 'pending' AND c.next_attempt_at <= $3
						AND (c.lease_until IS NULL OR c.lease_until <= $3)
						AND (c.order_key IS NULL OR NOT EXISTS (
							SELECT 1 FROM ` + p + `_deliveries o WHERE o.endpoint_id = c.endpoint_id AND o.order_key = c.order_key
								AND o.status = 'pending' AND o.id < c.id))
					ORDER BY c.next_attempt_at LIMIT $5
					FOR UPDATE OF c SKIP LOCKED) c
				WHERE e.enabled AND NOT (e.id = ANY ($4::text[]))
				ORDER BY c.next_attempt_at LIMIT $5) due, ` + p + `_messages m
			WHERE d.id = due.id AND m.id = d.message_id
			RETURNING d.id, d.message_id, d.endpoint_id, d.attempts, d.order_key, m.event_type, m.payload, m.created_at`,
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('idem.webhook.migrate'))`); err != nil {
			return err
		}
		for _, stmt := range Schema(p) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: migrate: %w", err)
	}
	return s, nil
}

func validIdent(s string) error {
	if s == "" || len(s) > 40 {
		return fmt.Errorf("webhook: invalid table prefix %q", s)
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return fmt.Errorf("webhook: invalid table prefix %q (letters, digits, _)", s)
		}
	}
	return nil
}

// Offsets returns the consumer's dedupe store, in the same database.
func (s *Store) Offsets() dedupe.OffsetStore[pgx.Tx] { return s.dd }

// Pool returns the pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close does nothing: the pool is the caller's.
func (s *Store) Close() error { return nil }

// Ingest implements webhook.IngestStore.
func (s *Store) Ingest(ctx context.Context, tx pgx.Tx, m webhook.IncomingMessage, lease webhook.Lease) ([]webhook.Delivery, int, error) {
	rows, err := tx.Query(ctx, s.q.ingest, m.ID, m.EventType, m.Payload, m.Key, m.Topic, m.Partition, m.Offset, m.At, lease.Token, lease.Until, nonNil(lease.Except))
	if err != nil {
		return nil, 0, fmt.Errorf("webhook: record message: %w", err)
	}
	defer rows.Close()
	var leased []webhook.Delivery
	unleased := 0
	for rows.Next() {
		var d webhook.Delivery
		var isLeased bool
		if err := rows.Scan(&d.ID, &d.EndpointID, &isLeased); err != nil {
			return nil, 0, err
		}
		if !isLeased {
			unleased++
			continue
		}
		d.MessageID, d.Token, d.LeaseUntil, d.EventType, d.Payload, d.CreatedAt = m.ID, lease.Token, lease.Until, m.EventType, m.Payload, m.At
		leased = append(leased, d)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("webhook: record deliveries: %w", err)
	}
	return leased, unleased, nil
}

// IngestBatch implements webhook.IngestStore: one round trip for the batch.
func (s *Store) IngestBatch(ctx context.Context, tx pgx.Tx, ms []webhook.IncomingMessage, lease webhook.Lease) ([]webhook.Delivery, int, error) {
	if len(ms) == 0 {
		return nil, 0, nil
	}
	n := len(ms)
	ids, types, topics := make([]string, n), make([]string, n), make([]string, n)
	payloads, keys := make([][]byte, n), make([][]byte, n)
	partitions, offsets := make([]int32, n), make([]int64, n)
	byID := make(map[string]*webhook.IncomingMessage, n)
	for i := range ms {
		m := &ms[i]
		ids[i], types[i], payloads[i], keys[i], topics[i], partitions[i], offsets[i] = m.ID, m.EventType, m.Payload, m.Key, m.Topic, m.Partition, m.Offset
		byID[m.ID] = m
	}
	at := ms[0].At
	rows, err := tx.Query(ctx, s.q.ingestBatch, ids, types, payloads, keys, topics, partitions, offsets, at, lease.Token, lease.Until, nonNil(lease.Except))
	if err != nil {
		return nil, 0, fmt.Errorf("webhook: record messages: %w", err)
	}
	defer rows.Close()
	var leased []webhook.Delivery
	unleased := 0
	for rows.Next() {
		var d webhook.Delivery
		var isLeased bool
		if err := rows.Scan(&d.ID, &d.MessageID, &d.EndpointID, &isLeased); err != nil {
			return nil, 0, err
		}
		if !isLeased {
			unleased++
			continue
		}
		m := byID[d.MessageID]
		d.Token, d.LeaseUntil, d.EventType, d.Payload, d.CreatedAt = lease.Token, lease.Until, m.EventType, m.Payload, m.At
		leased = append(leased, d)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("webhook: record deliveries: %w", err)
	}
	return leased, unleased, nil
}

// AddEndpoint implements webhook.Store.
func (s *Store) AddEndpoint(ctx context.Context, e webhook.Endpoint) error {
	secrets, _ := json.Marshal(e.Secrets)
	types := e.EventTypes
	if types == nil {
		types = []string{}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO `+s.t.endpoints+` (id, url, description, event_types, ordered, enabled, disabled_reason, rate_limit, max_in_flight, secrets, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, e.ID, e.URL, e.Description, types, e.Ordered, e.Enabled, e.DisabledReason,
		e.RateLimit, e.MaxInFlight, string(secrets), e.CreatedAt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("webhook: endpoint %s already exists", e.ID)
	}
	return err
}

const endpointColumns = `id, url, description, event_types, ordered, enabled, disabled_reason, rate_limit, max_in_flight, secrets, failing_since, created_at`

func scanEndpoint(row pgx.Row) (webhook.Endpoint, error) {
	var e webhook.Endpoint
	var secrets []byte
	var failing *time.Time
	if err := row.Scan(&e.ID, &e.URL, &e.Description, &e.EventTypes, &e.Ordered, &e.Enabled, &e.DisabledReason, &e.RateLimit, &e.MaxInFlight, &secrets, &failing, &e.CreatedAt); err != nil {
		return e, err
	}
	if err := json.Unmarshal(secrets, &e.Secrets); err != nil {
		return e, fmt.Errorf("webhook: endpoint %s secrets: %w", e.ID, err)
	}
	if failing != nil {
		e.FailingSince = failing.UTC()
	}
	e.CreatedAt = e.CreatedAt.UTC()
	return e, nil
}

// Endpoints implements webhook.Store.
func (s *Store) Endpoints(ctx context.Context) ([]webhook.Endpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM `+s.t.endpoints+` ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("webhook: endpoints: %w", err)
	}
	defer rows.Close()
	var out []webhook.Endpoint
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Endpoint implements webhook.Store.
func (s *Store) Endpoint(ctx context.Context, id string) (webhook.Endpoint, error) {
	e, err := scanEndpoint(s.pool.QueryRow(ctx, `SELECT `+endpointColumns+` FROM `+s.t.endpoints+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return e, fmt.Errorf("%w: %s", webhook.ErrEndpointNotFound, id)
	}
	return e, err
}

func (s *Store) updateEndpoint(ctx context.Context, id, set string, args ...any) error {
	tag, err := s.pool.Exec(ctx, `UPDATE `+s.t.endpoints+` SET `+set+` WHERE id = $1`, append([]any{id}, args...)...)
	if err != nil {
		return fmt.Errorf("webhook: update endpoint %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", webhook.ErrEndpointNotFound, id)
	}
	return nil
}

// SetEnabled implements webhook.Store.
func (s *Store) SetEnabled(ctx context.Context, id string, enabled bool, reason string) error {
	if enabled {
		return s.updateEndpoint(ctx, id, `enabled = true, disabled_reason = '', failing_since = NULL`)
	}
	return s.updateEndpoint(ctx, id, `enabled = false, disabled_reason = $2`, reason)
}

// SetSecrets implements webhook.Store.
func (s *Store) SetSecrets(ctx context.Context, id string, secrets []webhook.Secret) error {
	b, _ := json.Marshal(secrets)
	return s.updateEndpoint(ctx, id, `secrets = $2`, string(b))
}

// Claim implements webhook.Store.
func (s *Store) Claim(ctx context.Context, now time.Time, limit int, exclude []string, lease webhook.Lease) ([]webhook.Delivery, error) {
	if exclude == nil {
		exclude = []string{}
	}
	rows, err := s.pool.Query(ctx, s.q.claim, lease.Token, lease.Until, now, exclude, limit)
	if err != nil {
		return nil, fmt.Errorf("webhook: claim: %w", err)
	}
	defer rows.Close()
	var out []webhook.Delivery
	for rows.Next() {
		d := webhook.Delivery{Token: lease.Token, LeaseUntil: lease.Until}
		var key []byte
		if err := rows.Scan(&d.ID, &d.MessageID, &d.EndpointID, &d.Attempts, &key, &d.EventType, &d.Payload, &d.CreatedAt); err != nil {
			return nil, err
		}
		if key != nil {
			k := string(key)
			d.OrderKey = &k
		}
		d.CreatedAt = d.CreatedAt.UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("webhook: claim: %w", err)
	}
	return out, nil
}

// Record implements webhook.Store: one transaction, one round trip, and
// two set-based statements for the whole batch however large (deliveries
// from arrays, attempts from arrays), so PostgreSQL plans two statements,
// not two per result.
func (s *Store) Record(ctx context.Context, results []webhook.AttemptResult, disableAfter time.Duration) error {
	n := len(results)
	ids, tokens, attempts, codes := make([]int64, n), make([]int64, n), make([]int32, n), make([]int32, n)
	outcomes, errs := make([]string, n), make([]string, n)
	next, started := make([]time.Time, n), make([]time.Time, n)
	var aIDs, aLatency []int64
	var aMsgs, aEps, aOutcomes, aErrs, aResps, aDisp []string
	var aAttempt, aCodes []int32
	var aStarted []time.Time
	for i, r := range results {
		ids[i], tokens[i], outcomes[i], attempts[i] = r.DeliveryID, r.Token, string(r.Outcome), int32(r.Attempt)
		codes[i], errs[i], next[i], started[i] = int32(r.StatusCode), r.Error, r.NextAttempt, r.Started
		if r.Outcome == webhook.OutcomeReleased {
			continue
		}
		aIDs, aMsgs, aEps, aAttempt = append(aIDs, r.DeliveryID), append(aMsgs, r.MessageID), append(aEps, r.EndpointID), append(aAttempt, int32(r.Attempt))
		aOutcomes, aStarted, aLatency = append(aOutcomes, string(r.Outcome)), append(aStarted, r.Started), append(aLatency, r.Latency.Microseconds())
		aCodes, aErrs, aResps, aDisp = append(aCodes, int32(r.StatusCode)), append(aErrs, r.Error), append(aResps, r.Response), append(aDisp, r.Dispatcher)
	}
	d, a, e := s.t.deliveries, s.t.attempts, s.t.endpoints
	b := &pgx.Batch{}
	// Only while the lease still carries the token that sent it. Released:
	// the lease goes, nothing else changes. Succeeded, dead: final.
	// Failed, gone: waits for its next attempt.
	b.Queue(`UPDATE `+d+` AS d SET
			status = CASE WHEN r.outcome IN ('succeeded', 'dead') THEN r.outcome ELSE d.status END,
			attempts = CASE WHEN r.outcome = 'released' THEN d.attempts ELSE r.attempt END,
			next_attempt_at = CASE WHEN r.outcome IN ('failed', 'gone') THEN r.next_attempt ELSE d.next_attempt_at END,
			lease_token = NULL, lease_until = NULL,
			last_status = CASE WHEN r.outcome = 'released' THEN d.last_status ELSE r.status_code END,
			last_error = CASE WHEN r.outcome = 'released' THEN d.last_error ELSE r.error END,
			updated_at = CASE WHEN r.outcome = 'released' THEN d.updated_at ELSE r.started END
		FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::timestamptz[], $6::int[], $7::text[], $8::timestamptz[])
			AS r (id, token, outcome, attempt, next_attempt, status_code, error, started)
		WHERE d.id = r.id AND d.lease_token = r.token`, ids, tokens, outcomes, attempts, next, codes, errs, started)
	if len(aIDs) > 0 {
		b.Queue(`INSERT INTO `+a+` (delivery_id, message_id, endpoint_id, attempt, outcome, started_at, latency_us, status_code, error, response, dispatcher)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[], $7::bigint[], $8::int[], $9::text[], $10::text[], $11::text[])`,
			aIDs, aMsgs, aEps, aAttempt, aOutcomes, aStarted, aLatency, aCodes, aErrs, aResps, aDisp)
	}
	for _, h := range webhook.EndpointHealth(results) {
		switch {
		case h.Gone:
			b.Queue(`UPDATE `+e+` SET enabled = false, disabled_reason = $1 WHERE id = $2 AND enabled`, h.Reason, h.EndpointID)
		case h.Succeeded:
			b.Queue(`UPDATE `+e+` SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL`, h.EndpointID)
		default:
			b.Queue(`UPDATE `+e+` SET failing_since = coalesce(failing_since, $1) WHERE id = $2`, h.FirstFailure, h.EndpointID)
			if disableAfter > 0 {
				b.Queue(`UPDATE `+e+` SET enabled = false, disabled_reason = $1 WHERE id = $2 AND enabled AND failing_since <= $3`,
					h.Reason, h.EndpointID, h.LastFailure.Add(-disableAfter))
			}
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
	if err != nil {
		return fmt.Errorf("webhook: record: %w", err)
	}
	return nil
}

// Attempts implements webhook.Store.
func (s *Store) Attempts(ctx context.Context, f webhook.AttemptFilter) ([]webhook.Attempt, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT id, delivery_id, message_id, endpoint_id, attempt, outcome, started_at, latency_us, status_code, error, response, dispatcher
		FROM `+s.t.attempts+` WHERE ($1 = '' OR endpoint_id = $1) AND ($2 = '' OR message_id = $2) AND ($3 = '' OR outcome = $3)
			AND ($4::timestamptz IS NULL OR started_at >= $4)
		ORDER BY id DESC LIMIT $5`, f.EndpointID, f.MessageID, string(f.Outcome), nullTime(f.Since), f.Limit)
	if err != nil {
		return nil, fmt.Errorf("webhook: attempts: %w", err)
	}
	defer rows.Close()
	var out []webhook.Attempt
	for rows.Next() {
		var at webhook.Attempt
		var latency int64
		var outcome string
		if err := rows.Scan(&at.ID, &at.DeliveryID, &at.MessageID, &at.EndpointID, &at.Attempt, &outcome, &at.Started, &latency, &at.StatusCode, &at.Error, &at.Response, &at.Dispatcher); err != nil {
			return nil, err
		}
		at.Outcome, at.Started, at.Latency = webhook.Outcome(outcome), at.Started.UTC(), time.Duration(latency)*time.Microsecond
		out = append(out, at)
	}
	return out, rows.Err()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Deliveries implements webhook.Store.
func (s *Store) Deliveries(ctx context.Context, f webhook.DeliveryFilter) ([]webhook.DeliveryInfo, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT d.id, d.message_id, d.endpoint_id, coalesce(m.event_type, ''), d.status, d.attempts, d.next_attempt_at,
			d.last_status, d.last_error, d.created_at, d.updated_at
		FROM `+s.t.deliveries+` d LEFT JOIN `+s.t.messages+` m ON m.id = d.message_id
		WHERE ($1 = '' OR d.endpoint_id = $1) AND ($2 = '' OR d.message_id = $2) AND ($3 = '' OR d.status = $3)
		ORDER BY d.id DESC LIMIT $4`, f.EndpointID, f.MessageID, f.Status, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("webhook: deliveries: %w", err)
	}
	defer rows.Close()
	var out []webhook.DeliveryInfo
	for rows.Next() {
		var d webhook.DeliveryInfo
		var next time.Time
		if err := rows.Scan(&d.ID, &d.MessageID, &d.EndpointID, &d.EventType, &d.Status, &d.Attempts, &next, &d.LastStatus, &d.LastError, &d.CreatedAt, &d.UpdatedAt); err != nil {
			return nil, err
		}
		if d.Status == webhook.StatusPending {
			d.NextAttempt = next.UTC()
		}
		d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// Replay implements webhook.Store.
func (s *Store) Replay(ctx context.Context, r webhook.Replay, now time.Time) (int64, error) {
	if err := r.Validate(); err != nil {
		return 0, err
	}
	dead := ""
	if r.DeadOnly {
		dead = webhook.StatusDead
	}
	tag, err := s.pool.Exec(ctx, `UPDATE `+s.t.deliveries+` SET status = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1
		WHERE ($2 = '' OR message_id = $2) AND ($3 = '' OR endpoint_id = $3) AND ($4 = '' OR status = $4)
			AND ($5::timestamptz IS NULL OR created_at >= $5)
			AND NOT (status = 'pending' AND lease_until IS NOT NULL AND lease_until > $1)`,
		now, r.MessageID, r.EndpointID, dead, nullTime(r.Since))
	if err != nil {
		return 0, fmt.Errorf("webhook: replay: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Stats implements webhook.Store.
func (s *Store) Stats(ctx context.Context) (webhook.Stats, error) {
	st := webhook.Stats{Pending: map[string]int64{}, OldestPending: map[string]time.Time{}, Dead: map[string]int64{}}
	rows, err := s.pool.Query(ctx, `SELECT endpoint_id, status, count(*), min(created_at) FROM `+s.t.deliveries+`
		WHERE status IN ('pending', 'dead') GROUP BY endpoint_id, status`)
	if err != nil {
		return st, fmt.Errorf("webhook: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ep, status string
		var n int64
		var oldest time.Time
		if err := rows.Scan(&ep, &status, &n, &oldest); err != nil {
			return st, err
		}
		if status == webhook.StatusPending {
			st.Pending[ep], st.OldestPending[ep] = n, oldest.UTC()
		} else {
			st.Dead[ep] = n
		}
	}
	if err := rows.Err(); err != nil {
		return st, err
	}
	err = s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE NOT enabled) FROM `+s.t.endpoints).Scan(&st.Endpoints, &st.Disabled)
	return st, err
}

// Cleanup implements webhook.Store.
func (s *Store) Cleanup(ctx context.Context, before time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = 1000
	}
	d, a, m := s.t.deliveries, s.t.attempts, s.t.messages
	var total int64
	for {
		var n int64
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			// SKIP LOCKED: never waits for, nor blocks, a dispatcher.
			return tx.QueryRow(ctx, `WITH gone AS (
					DELETE FROM `+d+` WHERE id IN (
						SELECT id FROM `+d+` WHERE status = 'succeeded' AND updated_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
					RETURNING id, message_id),
				attempts AS (DELETE FROM `+a+` WHERE delivery_id IN (SELECT id FROM gone)),
				msgs AS (DELETE FROM `+m+` WHERE id IN (SELECT message_id FROM gone)
					AND NOT EXISTS (SELECT 1 FROM `+d+` o WHERE o.message_id = `+m+`.id AND o.id NOT IN (SELECT id FROM gone)))
				SELECT count(*) FROM gone`, before, batch).Scan(&n)
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("webhook: cleanup: %w", err)
		}
		if n < int64(batch) {
			return total, nil
		}
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
