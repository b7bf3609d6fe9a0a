// Package dedupe makes an at-least-once consumer effectively-once: it records
// which event ids were processed in the same database transaction as the
// handler's own writes, so "the effect happened" and "the id is marked
// processed" commit together or not at all.
//
// This is the "processed ids table" of the textbook idempotent consumer, done
// so that its corner cases hold:
//
//   - The claim is the first statement of the transaction. A concurrent
//     delivery of the same id blocks on it (PostgreSQL: the unique-key insert
//     waits for the first transaction; SQLite: the single writer connection)
//     and, once the first commits, sees a duplicate. Never both commit.
//   - If the handler fails, or the process dies before COMMIT, the claim
//     rolls back with the handler's writes and the next delivery runs the
//     handler again.
//   - Every suppressed duplicate is counted, so the audit trail shows when an
//     event was processed, by whom, with what outcome, and how many
//     redeliveries were absorbed.
//
// What this cannot do: make an external side effect (an HTTP call to a
// payment gateway) happen once. A crash after the call and before COMMIT
// re-runs the handler. Pass the event id downstream as that service's
// idempotency key; see examples/chargecustomer.
//
// [Consumer] builds on it for Kafka: a franz-go group member that also keeps
// each partition's offset in the handler's transaction and resumes from the
// database, not from Kafka's group commits.
//
// Two stores share the [Store] interface: [SQLite] (embedded, the default) and
// [Postgres]. Each hands the handler its native transaction type (*sql.Tx or
// pgx.Tx) rather than a lowest-common-denominator wrapper: a handler is
// written against one database anyway, and the native type keeps every
// feature of the driver (COPY, batches, savepoints, named types).
package dedupe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Handler does the work for one event inside the store's transaction. It
// must write through tx only: writes through another connection do not roll
// back with the claim.
type Handler[Tx any] func(ctx context.Context, tx Tx) error

// Store is implemented by [*SQLite] (Tx = *sql.Tx) and [*Postgres]
// (Tx = pgx.Tx). Code that must work with both, such as a consumer loop, is
// written generically over Tx.
type Store[Tx any] interface {
	// Process claims eventID and runs h in one transaction. See
	// [SQLite.Process] for the full contract.
	Process(ctx context.Context, eventID string, h Handler[Tx]) (Result, error)
	// Lookup returns the audit record of eventID, or ErrNotFound.
	Lookup(ctx context.Context, eventID string) (Record, error)
	// Cleanup deletes expired records in bounded batches.
	Cleanup(ctx context.Context) (int64, error)
	Close() error
}

// Status says what Process did with a delivery.
type Status int

const (
	// Processed: the handler ran and its writes committed with the claim.
	Processed Status = iota + 1
	// Duplicate: the id was already processed (and not expired); the handler
	// did not run and the duplicate was counted in the audit record.
	Duplicate
	// Rejected: the handler returned a [Permanent] error; its writes rolled
	// back but the id was recorded with outcome "rejected" so redeliveries
	// are suppressed instead of retried forever.
	Rejected
)

func (s Status) String() string {
	switch s {
	case Processed:
		return "processed"
	case Duplicate:
		return "duplicate"
	case Rejected:
		return "rejected"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result reports what Process did. A duplicate is a result, not an error: a
// consumer must acknowledge it like a success, and making it an error invites
// callers to retry it forever.
type Result struct {
	Status Status
	// Record is the audit record as of this call. For a duplicate it tells
	// when and by whom the event was first processed.
	Record Record
}

// Record is the audit trail of one event id: "processed exactly once,
// provably".
type Record struct {
	EventID     string
	Consumer    string    // Config.Consumer of the process that ran the handler
	Outcome     string    // "processed", or "rejected: <error>"
	ProcessedAt time.Time // when the handler's transaction claimed the id
	// Duplicates counts deliveries suppressed after the first; the last one
	// was at LastDuplicateAt (zero if none).
	Duplicates      int64
	LastDuplicateAt time.Time
	// ExpiresAt is when the record may be deleted; after it a redelivery is
	// treated as new. The zero time means never.
	ExpiresAt time.Time
}

// Config is shared by both stores. The zero value is usable.
type Config struct {
	// Table is the name of the processed-ids table (default "idem_processed").
	// Use one table per consumer group when several share a database: an id
	// processed by the billing consumer is not processed for the mailer.
	Table string
	// Consumer names this consumer in the audit trail (default: hostname/pid).
	Consumer string
	// Retention is how long a record suppresses redeliveries (default
	// 7 days, Kafka's default log retention, so any redelivery the broker
	// can still make is caught). Negative keeps records forever.
	Retention time.Duration
	// CleanupBatch bounds how many rows one Cleanup transaction deletes
	// (default 1000), so cleanup never holds long locks.
	CleanupBatch int
	// Now is the clock (default time.Now); tests inject a fake one.
	Now func() time.Time
	// LockTimeout (Postgres only) bounds how long a delivery waits for a
	// concurrent delivery of the same id before returning ErrInProgress.
	// Zero waits as long as ctx allows, which is what a consumer usually
	// wants: after the wait it sees a duplicate and moves on.
	LockTimeout time.Duration
}

var (
	// ErrNotFound is returned by Lookup for an id with no (unexpired) record.
	ErrNotFound = errors.New("dedupe: event id not found")
	// ErrInProgress is returned when the store gives up waiting for a
	// concurrent delivery of the same id (Postgres with LockTimeout set).
	// The delivery is safe to retry.
	ErrInProgress = errors.New("dedupe: event id is being processed by another delivery")
	// ErrEmptyEventID rejects "" as an event id; it would collide across events.
	ErrEmptyEventID = errors.New("dedupe: empty event id")
)

// Permanent marks a handler error as not worth retrying (a malformed event,
// a business rule violation). Process rolls back the handler's writes but
// records the id with outcome "rejected: <err>" and returns Status Rejected
// together with err, so redeliveries are suppressed. Any other error rolls
// everything back and the next delivery runs the handler again.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

const (
	outcomeProcessed = "processed"
	outcomeRejected  = "rejected"
)

// forever is stored as the expiry of records kept forever, so that the
// "expired" predicate stays a single comparison (and uses the index).
var forever = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

func (c Config) withDefaults() Config {
	if c.Table == "" {
		c.Table = "idem_processed"
	}
	if c.Consumer == "" {
		c.Consumer = defaultConsumer()
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.CleanupBatch <= 0 {
		c.CleanupBatch = 1000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) expiry(now time.Time) time.Time {
	if c.Retention < 0 {
		return forever
	}
	return now.Add(c.Retention)
}

func rejectedOutcome(err error) string {
	msg := err.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return outcomeRejected + ": " + msg
}

// RunCleanup calls s.Cleanup every interval until ctx is done. Errors are
// passed to onErr (may be nil) and do not stop the loop: the next tick retries.
func RunCleanup[Tx any](ctx context.Context, s Store[Tx], interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Cleanup(ctx); err != nil && onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// validIdent keeps table names safe to splice into SQL: identifiers cannot be
// bound as parameters.
func validIdent(s string) error {
	if s == "" || len(s) > 50 {
		return fmt.Errorf("dedupe: invalid table name %q", s)
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("dedupe: invalid table name %q (letters, digits, _)", s)
		}
	}
	return nil
}

func defaultConsumer() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return host + "/" + strconv.Itoa(os.Getpid())
}

// now reads the clock at the microsecond precision both databases keep, so a
// value written and read back compares equal.
func (c Config) now() time.Time { return c.Now().UTC().Truncate(time.Microsecond) }
