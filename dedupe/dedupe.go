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
// Two stores share the [Store] interface, each in its own package so that a
// service links only the driver it uses: [github.com/idem-dev/idem/dedupe/sqlitestore]
// (embedded, modernc.org/sqlite) and [github.com/idem-dev/idem/dedupe/pgstore]
// (PostgreSQL through pgx v5). Each hands the handler its native
// transaction type (*sql.Tx or pgx.Tx) rather than a lowest-common-
// denominator wrapper: a handler is written against one database anyway,
// and the native type keeps every feature of the driver (COPY, batches,
// savepoints, named types). [github.com/idem-dev/idem/dedupe/dedupetest]
// checks any other implementation against the same contract.
package dedupe

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Handler does the work for one event inside the store's transaction. It
// must write through tx only: writes through another connection do not roll
// back with the claim.
type Handler[Tx any] func(ctx context.Context, tx Tx) error

// Store is implemented by sqlitestore.Store (Tx = *sql.Tx) and
// pgstore.Store (Tx = pgx.Tx). Code that must work with both, such as a
// consumer loop, is written generically over Tx.
type Store[Tx any] interface {
	// Process claims eventID and runs h with the same transaction; the
	// claim and h's writes commit together.
	//
	//   - First delivery: h runs; if it returns nil the transaction commits
	//     and the result is Processed.
	//   - Already processed (record not expired): h does not run; the
	//     duplicate is counted in the audit record and the result is
	//     Duplicate, err nil.
	//   - h returns an error: everything rolls back, nothing is recorded,
	//     and the error is returned; the next delivery runs h again. If the
	//     error is [Permanent], the id is then recorded as rejected (Status
	//     Rejected, and the error is returned too).
	//   - h panics: the transaction rolls back and the panic continues.
	//
	// Concurrent deliveries of one id wait for each other; exactly one runs
	// h to commit. h must not commit or roll back the transaction.
	Process(ctx context.Context, eventID string, h Handler[Tx]) (Result, error)
	// Lookup returns the audit record of eventID, or ErrNotFound.
	Lookup(ctx context.Context, eventID string) (Record, error)
	Cleaner
	Close() error
}

// Cleaner deletes expired entries. Both toolkit packages' stores implement
// it with this one signature (idempotency.Cleaner is the same), and
// [RunCleanup] drives it.
type Cleaner interface {
	// Cleanup deletes the entries expired at now, in bounded batches (each
	// its own short transaction), until none are left or ctx is done. It
	// returns how many it deleted.
	Cleanup(ctx context.Context, now time.Time) (int64, error)
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
	// DeadLettered: the Consumer gave up on the record (a Permanent error,
	// or RetryPolicy.MaxAttempts failures) and, in the same transaction as
	// its offset, recorded it with outcome "dead-lettered" and queued it for
	// the dead-letter topic.
	DeadLettered
)

func (s Status) String() string {
	switch s {
	case Processed:
		return "processed"
	case Duplicate:
		return "duplicate"
	case Rejected:
		return "rejected"
	case DeadLettered:
		return "dead-lettered"
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
	Outcome     string    // "processed", "rejected: <error>" or "dead-lettered: <error>"
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
	// SkipSchema leaves the tables to you: the store does not create them
	// (see the store package's Schema for the DDL to put in your
	// migrations). By default they are created if missing.
	SkipSchema bool
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

// RunCleanup calls c.Cleanup(ctx, time.Now()) at once and then every
// interval until ctx is done. Errors are passed to onErr (may be nil) and do
// not stop the loop: the next tick retries. idempotency.RunCleanup is the
// same function.
func RunCleanup(ctx context.Context, c Cleaner, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := c.Cleanup(ctx, time.Now()); err != nil && onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
