// Package sqlitestore is the dispatcher's embedded store: one SQLite file
// (modernc.org/sqlite, no cgo) holding the endpoints, messages, deliveries
// and attempt log next to the Kafka consumer's offsets and processed ids
// (dedupe/sqlitestore), so taking an event from Kafka and recording its
// deliveries commit in one transaction. Several dispatcher processes may
// share the file; SQLite's write lock serialises their claims. For several
// hosts use webhook/pgstore.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/idem-dev/idem/dedupe"
	dedupesqlite "github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/idem-dev/idem/webhook"
)

// Config configures the store. The zero value is usable.
type Config struct {
	// TablePrefix names the tables (default "idem_wh": idem_wh_endpoints,
	// idem_wh_messages, idem_wh_deliveries, idem_wh_attempts and the
	// consumer's idem_wh_processed).
	TablePrefix string
	// Now is the clock of the processed-ids records (default time.Now).
	Now func() time.Time
	// Retention is how long processed Kafka event ids are kept (default 7
	// days): an event produced again with the same idempotency key within
	// it is not delivered again.
	Retention time.Duration
}

// Store implements webhook.IngestStore[*sql.Tx].
type Store struct {
	dd   *dedupesqlite.Store
	w, r *sql.DB
	q    queries
	// Statements prepared once on the writer connection: SQLite spends
	// more parsing these than running them.
	insMsg, insDel, claim, payloads, release, finish, retry, insAttempt *sql.Stmt
}

var _ webhook.IngestStore[*sql.Tx] = (*Store)(nil)

type queries struct {
	endpoints, deliveries, messages, attempts string
	insertMessage, insertDeliveries           string
	claim, payloads                           string
	release, finish, retry, insertAttempt     string
}

// Schema returns the DDL of the dispatcher's tables (not the consumer's
// dedupe tables, for which see dedupe/sqlitestore.Schema(prefix+"_processed")).
func Schema(prefix string) []string {
	if prefix == "" {
		prefix = "idem_wh"
	}
	p := prefix
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + p + `_endpoints (
			id TEXT PRIMARY KEY,
			url TEXT NOT NULL,
			description TEXT NOT NULL DEFAULT '',
			event_types TEXT NOT NULL DEFAULT '[]', -- JSON array; empty: all
			ordered INTEGER NOT NULL DEFAULT 0,
			enabled INTEGER NOT NULL DEFAULT 1,
			disabled_reason TEXT NOT NULL DEFAULT '',
			rate_limit REAL NOT NULL DEFAULT 0,
			max_in_flight INTEGER NOT NULL DEFAULT 0,
			secrets TEXT NOT NULL, -- JSON array of {key, expires_at}
			failing_since INTEGER, -- unix microseconds
			created_at INTEGER NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `_messages (
			id TEXT PRIMARY KEY,
			event_type TEXT NOT NULL,
			payload BLOB NOT NULL,
			record_key BLOB,
			topic TEXT NOT NULL,
			partition INTEGER NOT NULL,
			record_offset INTEGER NOT NULL,
			created_at INTEGER NOT NULL
		) WITHOUT ROWID`,
		`CREATE TABLE IF NOT EXISTS ` + p + `_deliveries (
			id INTEGER PRIMARY KEY AUTOINCREMENT, -- also the per-key order
			message_id TEXT NOT NULL,
			endpoint_id TEXT NOT NULL,
			order_key BLOB, -- the record key on an ordered endpoint
			status TEXT NOT NULL,
			attempts INTEGER NOT NULL DEFAULT 0,
			next_attempt_at INTEGER NOT NULL,
			lease_token INTEGER,
			lease_until INTEGER,
			last_status INTEGER NOT NULL DEFAULT 0,
			last_error TEXT NOT NULL DEFAULT '',
			created_at INTEGER NOT NULL,
			updated_at INTEGER NOT NULL,
			UNIQUE (message_id, endpoint_id)
		)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_deliveries_due ON ` + p + `_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending'`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_deliveries_order ON ` + p + `_deliveries (endpoint_id, order_key, id) WHERE status = 'pending' AND order_key IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_deliveries_endpoint ON ` + p + `_deliveries (endpoint_id, status, created_at)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `_attempts (
			id INTEGER PRIMARY KEY AUTOINCREMENT,
			delivery_id INTEGER NOT NULL,
			message_id TEXT NOT NULL,
			endpoint_id TEXT NOT NULL,
			attempt INTEGER NOT NULL,
			outcome TEXT NOT NULL,
			started_at INTEGER NOT NULL,
			latency_us INTEGER NOT NULL,
			status_code INTEGER NOT NULL,
			error TEXT NOT NULL,
			response TEXT NOT NULL,
			dispatcher TEXT NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_attempts_endpoint ON ` + p + `_attempts (endpoint_id, id)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_attempts_message ON ` + p + `_attempts (message_id)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_attempts_delivery ON ` + p + `_attempts (delivery_id)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_deliveries_finished ON ` + p + `_deliveries (updated_at) WHERE status = 'succeeded'`,
	}
}

// Open opens (creating if needed) the database at path with the
// dispatcher's tables and the consumer's dedupe tables.
func Open(ctx context.Context, path string, cfg Config) (*Store, error) {
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = "idem_wh"
	}
	if err := validIdent(cfg.TablePrefix); err != nil {
		return nil, err
	}
	dd, err := dedupesqlite.Open(ctx, path, dedupe.Config{Table: cfg.TablePrefix + "_processed", Now: cfg.Now, Retention: cfg.Retention, Consumer: "webhooks"})
	if err != nil {
		return nil, err
	}
	r, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=query_only(1)")
	if err != nil {
		dd.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	s := &Store{dd: dd, w: dd.DB(), r: r}
	p := cfg.TablePrefix
	s.q = queries{
		endpoints: p + "_endpoints", deliveries: p + "_deliveries", messages: p + "_messages", attempts: p + "_attempts",
		insertMessage: `INSERT INTO ` + p + `_messages (id, event_type, payload, record_key, topic, partition, record_offset, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		// One delivery per subscribed endpoint, enabled or not. Those that
		// can go at once (enabled, no key order to wait for) are leased.
		insertDeliveries: `INSERT INTO ` + p + `_deliveries (message_id, endpoint_id, order_key, status, next_attempt_at, lease_token, lease_until, created_at, updated_at)
			SELECT ?1, e.id, CASE WHEN e.ordered THEN ?2 END, 'pending', ?3,
				CASE WHEN e.enabled AND (NOT e.ordered OR ?2 IS NULL) AND e.id NOT IN (SELECT value FROM json_each(?7)) THEN ?4 END,
				CASE WHEN e.enabled AND (NOT e.ordered OR ?2 IS NULL) AND e.id NOT IN (SELECT value FROM json_each(?7)) THEN ?5 END, ?3, ?3
			FROM ` + p + `_endpoints e
			WHERE e.event_types = '[]' OR EXISTS (SELECT 1 FROM json_each(e.event_types) WHERE value = ?6)
			RETURNING id, endpoint_id, lease_token IS NOT NULL`,
		// One endpoint at a time (Claim loops over the enabled ones), so
		// the backlog of a disabled endpoint is never scanned.
		claim: `UPDATE ` + p + `_deliveries SET lease_token = ?1, lease_until = ?2
			WHERE id IN (
				SELECT d.id FROM ` + p + `_deliveries d
				WHERE d.endpoint_id = ?4 AND d.status = 'pending' AND d.next_attempt_at <= ?3
					AND (d.lease_until IS NULL OR d.lease_until <= ?3)
					AND (d.order_key IS NULL OR NOT EXISTS (
						SELECT 1 FROM ` + p + `_deliveries o WHERE o.endpoint_id = d.endpoint_id AND o.order_key = d.order_key
							AND o.status = 'pending' AND o.id < d.id))
				ORDER BY d.next_attempt_at LIMIT ?5)
			RETURNING id, message_id, endpoint_id, attempts, order_key`,
		payloads: `SELECT id, event_type, payload, created_at FROM ` + p + `_messages WHERE id IN (SELECT value FROM json_each(?))`,
		release:  `UPDATE ` + p + `_deliveries SET lease_token = NULL, lease_until = NULL WHERE id = ? AND lease_token = ?`,
		finish: `UPDATE ` + p + `_deliveries SET status = ?, attempts = ?, lease_token = NULL, lease_until = NULL,
			last_status = ?, last_error = ?, updated_at = ? WHERE id = ? AND lease_token = ?`,
		retry: `UPDATE ` + p + `_deliveries SET attempts = ?, next_attempt_at = ?, lease_token = NULL, lease_until = NULL,
			last_status = ?, last_error = ?, updated_at = ? WHERE id = ? AND lease_token = ?`,
		insertAttempt: `INSERT INTO ` + p + `_attempts (delivery_id, message_id, endpoint_id, attempt, outcome, started_at, latency_us, status_code, error, response, dispatcher)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	}
	if err := s.migrate(ctx, p); err != nil {
		s.Close()
		return nil, err
	}
	for _, st := range []struct {
		stmt **sql.Stmt
		sql  string
	}{{&s.insMsg, s.q.insertMessage}, {&s.insDel, s.q.insertDeliveries}, {&s.claim, s.q.claim}, {&s.payloads, s.q.payloads},
		{&s.release, s.q.release}, {&s.finish, s.q.finish}, {&s.retry, s.q.retry}, {&s.insAttempt, s.q.insertAttempt}} {
		var err error
		if *st.stmt, err = s.w.PrepareContext(ctx, st.sql); err != nil {
			s.Close()
			return nil, fmt.Errorf("webhook: prepare: %w", err)
		}
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

func (s *Store) migrate(ctx context.Context, prefix string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("webhook: migrate: %w", err)
	}
	defer tx.Rollback()
	for _, stmt := range Schema(prefix) {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("webhook: migrate: %w", err)
		}
	}
	return tx.Commit()
}

// Offsets returns the consumer's dedupe store, in the same database.
func (s *Store) Offsets() dedupe.OffsetStore[*sql.Tx] { return s.dd }

// DB returns the writer handle (tests and tools; not from inside Ingest).
func (s *Store) DB() *sql.DB { return s.w }

// Close closes the database.
func (s *Store) Close() error {
	for _, st := range []*sql.Stmt{s.insMsg, s.insDel, s.claim, s.payloads, s.release, s.finish, s.retry, s.insAttempt} {
		if st != nil {
			st.Close()
		}
	}
	return errors.Join(s.r.Close(), s.dd.Close())
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// Ingest implements webhook.IngestStore.
func (s *Store) Ingest(ctx context.Context, tx *sql.Tx, m webhook.IncomingMessage, lease webhook.Lease) ([]webhook.Delivery, int, error) {
	now := micros(m.At)
	res, err := tx.StmtContext(ctx, s.insMsg).ExecContext(ctx, m.ID, m.EventType, m.Payload, m.Key, m.Topic, m.Partition, m.Offset, now)
	if err != nil {
		return nil, 0, fmt.Errorf("webhook: record message: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, 0, nil // already recorded (a replayed record past the dedupe retention)
	}
	var key any
	if m.Key != nil {
		key = m.Key
	}
	except, _ := json.Marshal(nonNil(lease.Except))
	rows, err := tx.StmtContext(ctx, s.insDel).QueryContext(ctx, m.ID, key, now, lease.Token, micros(lease.Until), m.EventType, string(except))
	if err != nil {
		return nil, 0, fmt.Errorf("webhook: record deliveries: %w", err)
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

// IngestBatch implements webhook.IngestStore: SQLite runs in-process, so
// one prepared statement pair per message costs no round trips.
func (s *Store) IngestBatch(ctx context.Context, tx *sql.Tx, ms []webhook.IncomingMessage, lease webhook.Lease) ([]webhook.Delivery, int, error) {
	var leased []webhook.Delivery
	unleased := 0
	for _, m := range ms {
		l, u, err := s.Ingest(ctx, tx, m, lease)
		if err != nil {
			return nil, 0, err
		}
		leased, unleased = append(leased, l...), unleased+u
	}
	return leased, unleased, nil
}

// AddEndpoint implements webhook.Store.
func (s *Store) AddEndpoint(ctx context.Context, e webhook.Endpoint) error {
	types, _ := json.Marshal(nonNil(e.EventTypes))
	secrets, _ := json.Marshal(e.Secrets)
	_, err := s.w.ExecContext(ctx, `INSERT INTO `+s.q.endpoints+` (id, url, description, event_types, ordered, enabled, disabled_reason, rate_limit, max_in_flight, secrets, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.ID, e.URL, e.Description, string(types), e.Ordered, e.Enabled, e.DisabledReason,
		e.RateLimit, e.MaxInFlight, string(secrets), micros(e.CreatedAt))
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		return fmt.Errorf("webhook: endpoint %s already exists", e.ID)
	}
	return err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const endpointColumns = `id, url, description, event_types, ordered, enabled, disabled_reason, rate_limit, max_in_flight, secrets, failing_since, created_at`

func scanEndpoint(sc interface{ Scan(...any) error }) (webhook.Endpoint, error) {
	var e webhook.Endpoint
	var types, secrets string
	var failing sql.NullInt64
	var created int64
	if err := sc.Scan(&e.ID, &e.URL, &e.Description, &types, &e.Ordered, &e.Enabled, &e.DisabledReason, &e.RateLimit, &e.MaxInFlight, &secrets, &failing, &created); err != nil {
		return e, err
	}
	if err := json.Unmarshal([]byte(types), &e.EventTypes); err != nil {
		return e, fmt.Errorf("webhook: endpoint %s event types: %w", e.ID, err)
	}
	if err := json.Unmarshal([]byte(secrets), &e.Secrets); err != nil {
		return e, fmt.Errorf("webhook: endpoint %s secrets: %w", e.ID, err)
	}
	e.FailingSince = fromMicros(failing)
	e.CreatedAt = time.UnixMicro(created).UTC()
	return e, nil
}

// Endpoints implements webhook.Store.
func (s *Store) Endpoints(ctx context.Context) ([]webhook.Endpoint, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+endpointColumns+` FROM `+s.q.endpoints+` ORDER BY created_at, id`)
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
	e, err := scanEndpoint(s.r.QueryRowContext(ctx, `SELECT `+endpointColumns+` FROM `+s.q.endpoints+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("%w: %s", webhook.ErrEndpointNotFound, id)
	}
	return e, err
}

func (s *Store) updateEndpoint(ctx context.Context, id, set string, args ...any) error {
	res, err := s.w.ExecContext(ctx, `UPDATE `+s.q.endpoints+` SET `+set+` WHERE id = ?`, append(args, id)...)
	if err != nil {
		return fmt.Errorf("webhook: update endpoint %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", webhook.ErrEndpointNotFound, id)
	}
	return nil
}

// SetEnabled implements webhook.Store.
func (s *Store) SetEnabled(ctx context.Context, id string, enabled bool, reason string) error {
	if enabled {
		return s.updateEndpoint(ctx, id, `enabled = 1, disabled_reason = '', failing_since = NULL`)
	}
	return s.updateEndpoint(ctx, id, `enabled = 0, disabled_reason = ?`, reason)
}

// SetSecrets implements webhook.Store.
func (s *Store) SetSecrets(ctx context.Context, id string, secrets []webhook.Secret) error {
	b, _ := json.Marshal(secrets)
	return s.updateEndpoint(ctx, id, `secrets = ?`, string(b))
}

// Claim implements webhook.Store.
func (s *Store) Claim(ctx context.Context, now time.Time, limit int, exclude []string, lease webhook.Lease) ([]webhook.Delivery, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("webhook: claim: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id FROM `+s.q.endpoints+` WHERE enabled`)
	if err != nil {
		return nil, fmt.Errorf("webhook: claim: %w", err)
	}
	var eps []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		if !slices.Contains(exclude, id) {
			eps = append(eps, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(eps) == 0 {
		return nil, err
	}
	// Each endpoint gets a fair share of the batch, in a random order; what
	// is left goes to those that had more, in further rounds.
	rand.Shuffle(len(eps), func(i, j int) { eps[i], eps[j] = eps[j], eps[i] })
	claim := tx.StmtContext(ctx, s.claim)
	var out []webhook.Delivery
	var ids []string
	for len(eps) > 0 && len(out) < limit {
		share := (limit-len(out))/len(eps) + 1
		var more []string
		for _, ep := range eps {
			if len(out) >= limit {
				break
			}
			n := min(share, limit-len(out))
			rows, err := claim.QueryContext(ctx, lease.Token, micros(lease.Until), micros(now), ep, n)
			if err != nil {
				return nil, fmt.Errorf("webhook: claim: %w", err)
			}
			got := 0
			for rows.Next() {
				d := webhook.Delivery{Token: lease.Token, LeaseUntil: lease.Until}
				var key []byte
				if err := rows.Scan(&d.ID, &d.MessageID, &d.EndpointID, &d.Attempts, &key); err != nil {
					rows.Close()
					return nil, err
				}
				if key != nil {
					k := string(key)
					d.OrderKey = &k
				}
				out = append(out, d)
				ids = append(ids, d.MessageID)
				got++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("webhook: claim: %w", err)
			}
			if got == n {
				more = append(more, ep)
			}
		}
		eps = more
	}
	if len(out) == 0 {
		return nil, nil
	}
	list, _ := json.Marshal(ids)
	prows, err := tx.StmtContext(ctx, s.payloads).QueryContext(ctx, string(list))
	if err != nil {
		return nil, fmt.Errorf("webhook: claim payloads: %w", err)
	}
	type msg struct {
		typ     string
		payload []byte
		at      int64
	}
	msgs := map[string]msg{}
	for prows.Next() {
		var id string
		var m msg
		if err := prows.Scan(&id, &m.typ, &m.payload, &m.at); err != nil {
			prows.Close()
			return nil, err
		}
		msgs[id] = m
	}
	prows.Close()
	for i := range out {
		m := msgs[out[i].MessageID]
		out[i].EventType, out[i].Payload, out[i].CreatedAt = m.typ, m.payload, time.UnixMicro(m.at).UTC()
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("webhook: claim: %w", err)
	}
	return out, nil
}

// Record implements webhook.Store.
func (s *Store) Record(ctx context.Context, results []webhook.AttemptResult, disableAfter time.Duration) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("webhook: record: %w", err)
	}
	defer tx.Rollback()
	release, finish, retry, insAttempt := tx.StmtContext(ctx, s.release), tx.StmtContext(ctx, s.finish), tx.StmtContext(ctx, s.retry), tx.StmtContext(ctx, s.insAttempt)
	for _, r := range results {
		var err error
		started := micros(r.Started)
		switch r.Outcome {
		case webhook.OutcomeReleased:
			_, err = release.ExecContext(ctx, r.DeliveryID, r.Token)
		case webhook.OutcomeSucceeded, webhook.OutcomeDead:
			_, err = finish.ExecContext(ctx, string(r.Outcome), r.Attempt, r.StatusCode, r.Error, started, r.DeliveryID, r.Token)
		default: // failed, gone: wait for the next attempt
			_, err = retry.ExecContext(ctx, r.Attempt, micros(r.NextAttempt), r.StatusCode, r.Error, started, r.DeliveryID, r.Token)
		}
		if err != nil {
			return fmt.Errorf("webhook: record delivery %d: %w", r.DeliveryID, err)
		}
		if r.Outcome == webhook.OutcomeReleased {
			continue
		}
		if _, err := insAttempt.ExecContext(ctx, r.DeliveryID, r.MessageID, r.EndpointID, r.Attempt, string(r.Outcome), started,
			r.Latency.Microseconds(), r.StatusCode, r.Error, r.Response, r.Dispatcher); err != nil {
			return fmt.Errorf("webhook: record attempt: %w", err)
		}
	}
	for _, h := range webhook.EndpointHealth(results) {
		e := s.q.endpoints
		var err error
		switch {
		case h.Gone:
			_, err = tx.ExecContext(ctx, `UPDATE `+e+` SET enabled = 0, disabled_reason = ? WHERE id = ? AND enabled`, h.Reason, h.EndpointID)
		case h.Succeeded:
			_, err = tx.ExecContext(ctx, `UPDATE `+e+` SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL`, h.EndpointID)
		default:
			_, err = tx.ExecContext(ctx, `UPDATE `+e+` SET failing_since = coalesce(failing_since, ?) WHERE id = ?`, micros(h.FirstFailure), h.EndpointID)
			if err == nil && disableAfter > 0 {
				_, err = tx.ExecContext(ctx, `UPDATE `+e+` SET enabled = 0, disabled_reason = ? WHERE id = ? AND enabled AND failing_since <= ?`,
					h.Reason, h.EndpointID, micros(h.LastFailure.Add(-disableAfter)))
			}
		}
		if err != nil {
			return fmt.Errorf("webhook: record endpoint health: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("webhook: record: %w", err)
	}
	return nil
}

// Attempts implements webhook.Store.
func (s *Store) Attempts(ctx context.Context, f webhook.AttemptFilter) ([]webhook.Attempt, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, delivery_id, message_id, endpoint_id, attempt, outcome, started_at, latency_us, status_code, error, response, dispatcher
		FROM `+s.q.attempts+` WHERE (?1 = '' OR endpoint_id = ?1) AND (?2 = '' OR message_id = ?2) AND (?3 = '' OR outcome = ?3) AND started_at >= ?4
		ORDER BY id DESC LIMIT ?5`, f.EndpointID, f.MessageID, string(f.Outcome), sinceMicros(f.Since), f.Limit)
	if err != nil {
		return nil, fmt.Errorf("webhook: attempts: %w", err)
	}
	defer rows.Close()
	var out []webhook.Attempt
	for rows.Next() {
		var a webhook.Attempt
		var started, latency int64
		var outcome string
		if err := rows.Scan(&a.ID, &a.DeliveryID, &a.MessageID, &a.EndpointID, &a.Attempt, &outcome, &started, &latency, &a.StatusCode, &a.Error, &a.Response, &a.Dispatcher); err != nil {
			return nil, err
		}
		a.Outcome, a.Started, a.Latency = webhook.Outcome(outcome), time.UnixMicro(started).UTC(), time.Duration(latency)*time.Microsecond
		out = append(out, a)
	}
	return out, rows.Err()
}

func sinceMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return micros(t)
}

// Deliveries implements webhook.Store.
func (s *Store) Deliveries(ctx context.Context, f webhook.DeliveryFilter) ([]webhook.DeliveryInfo, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `SELECT d.id, d.message_id, d.endpoint_id, coalesce(m.event_type, ''), d.status, d.attempts, d.next_attempt_at,
			d.last_status, d.last_error, d.created_at, d.updated_at
		FROM `+s.q.deliveries+` d LEFT JOIN `+s.q.messages+` m ON m.id = d.message_id
		WHERE (?1 = '' OR d.endpoint_id = ?1) AND (?2 = '' OR d.message_id = ?2) AND (?3 = '' OR d.status = ?3)
		ORDER BY d.id DESC LIMIT ?4`, f.EndpointID, f.MessageID, f.Status, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("webhook: deliveries: %w", err)
	}
	defer rows.Close()
	var out []webhook.DeliveryInfo
	for rows.Next() {
		var d webhook.DeliveryInfo
		var next, created, updated int64
		if err := rows.Scan(&d.ID, &d.MessageID, &d.EndpointID, &d.EventType, &d.Status, &d.Attempts, &next, &d.LastStatus, &d.LastError, &created, &updated); err != nil {
			return nil, err
		}
		if d.Status == webhook.StatusPending {
			d.NextAttempt = time.UnixMicro(next).UTC()
		}
		d.CreatedAt, d.UpdatedAt = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
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
	res, err := s.w.ExecContext(ctx, `UPDATE `+s.q.deliveries+` SET status = 'pending', attempts = 0, next_attempt_at = ?1, updated_at = ?1
		WHERE (?2 = '' OR message_id = ?2) AND (?3 = '' OR endpoint_id = ?3) AND (?4 = '' OR status = ?4) AND created_at >= ?5
			AND NOT (status = 'pending' AND lease_until IS NOT NULL AND lease_until > ?1)`,
		micros(now), r.MessageID, r.EndpointID, dead, sinceMicros(r.Since))
	if err != nil {
		return 0, fmt.Errorf("webhook: replay: %w", err)
	}
	return res.RowsAffected()
}

// Stats implements webhook.Store.
func (s *Store) Stats(ctx context.Context) (webhook.Stats, error) {
	st := webhook.Stats{Pending: map[string]int64{}, OldestPending: map[string]time.Time{}, Dead: map[string]int64{}}
	rows, err := s.r.QueryContext(ctx, `SELECT endpoint_id, status, count(*), min(created_at) FROM `+s.q.deliveries+`
		WHERE status IN ('pending', 'dead') GROUP BY endpoint_id, status`)
	if err != nil {
		return st, fmt.Errorf("webhook: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ep, status string
		var n, oldest int64
		if err := rows.Scan(&ep, &status, &n, &oldest); err != nil {
			return st, err
		}
		if status == webhook.StatusPending {
			st.Pending[ep], st.OldestPending[ep] = n, time.UnixMicro(oldest).UTC()
		} else {
			st.Dead[ep] = n
		}
	}
	if err := rows.Err(); err != nil {
		return st, err
	}
	err = s.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(NOT enabled), 0) FROM `+s.q.endpoints).Scan(&st.Endpoints, &st.Disabled)
	return st, err
}

// Cleanup implements webhook.Store.
func (s *Store) Cleanup(ctx context.Context, before time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = 1000
	}
	var total int64
	for {
		n, err := s.cleanupBatch(ctx, micros(before), batch)
		total += n
		if err != nil || n < int64(batch) {
			return total, err
		}
	}
}

func (s *Store) cleanupBatch(ctx context.Context, before int64, batch int) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("webhook: cleanup: %w", err)
	}
	defer tx.Rollback()
	d, a, m := s.q.deliveries, s.q.attempts, s.q.messages
	rows, err := tx.QueryContext(ctx, `DELETE FROM `+d+` WHERE id IN (
			SELECT id FROM `+d+` WHERE status = 'succeeded' AND updated_at < ? LIMIT ?)
		RETURNING id, message_id`, before, batch)
	if err != nil {
		return 0, fmt.Errorf("webhook: cleanup: %w", err)
	}
	var ids []int64
	msgs := map[string]bool{}
	for rows.Next() {
		var id int64
		var msg string
		if err := rows.Scan(&id, &msg); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
		msgs[msg] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+a+` WHERE delivery_id = ?`, id); err != nil {
			return 0, fmt.Errorf("webhook: cleanup attempts: %w", err)
		}
	}
	for msg := range msgs {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+m+` WHERE id = ? AND NOT EXISTS (SELECT 1 FROM `+d+` WHERE message_id = ?)`, msg, msg); err != nil {
			return 0, fmt.Errorf("webhook: cleanup messages: %w", err)
		}
	}
	return int64(len(ids)), tx.Commit()
}
