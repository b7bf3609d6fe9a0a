package idempotency

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Key identifies one idempotent request: the client's Idempotency-Key value
// within the client's scope. Scoping keeps one tenant from replaying (and so
// reading) another tenant's response by guessing its key.
type Key struct {
	Scope string
	Key   string
}

// Response is what the middleware stores and replays.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// BodyOmitted records that the body was larger than the middleware's
	// MaxResponseBytes and was not stored: the request completed, but its
	// response cannot be replayed.
	BodyOmitted bool
}

// ClaimStatus is the outcome of Store.Claim.
type ClaimStatus int

const (
	// Claimed: the caller owns the key (new, expired, or an abandoned
	// in-flight request whose lease ran out) and must Complete or Release it.
	Claimed ClaimStatus = iota + 1
	// InProgress: another request with this key and fingerprint holds an
	// unexpired lease (HTTP 409).
	InProgress
	// Completed: the stored response must be replayed.
	Completed
	// Mismatch: the key was used with a different request fingerprint (HTTP 422).
	Mismatch
)

func (s ClaimStatus) String() string {
	switch s {
	case Claimed:
		return "claimed"
	case InProgress:
		return "in-progress"
	case Completed:
		return "completed"
	case Mismatch:
		return "mismatch"
	}
	return fmt.Sprintf("ClaimStatus(%d)", int(s))
}

// Claim is the result of Store.Claim.
type Claim struct {
	Status ClaimStatus
	// Token identifies this claim; Complete and Release need it, so a request
	// whose lease was taken over cannot overwrite its successor's result.
	Token string
	// Response is set when Status is Completed.
	Response Response
}

// Entry is the stored state of a key, for Get.
type Entry struct {
	Fingerprint string
	// Done is false while the first request runs (or was abandoned and its
	// lease has not been taken over yet).
	Done        bool
	Response    Response // when Done
	LockedUntil time.Time
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// Tx is the transaction in which the handler's own writes and the stored
// response commit together. The handler reaches the concrete transaction
// with its store package's Tx function (sqlitestore.Tx, pgstore.Tx), or
// with RequestTx.
type Tx interface {
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Store keeps idempotency keys. sqlitestore.Store, pgstore.Store and
// redisstore.Store implement it; every method takes the time as an argument
// so the middleware's injected clock is the only clock.
// idempotencytest.Run checks an implementation against this contract.
type Store interface {
	// Claim atomically looks key up at time now: an absent or expired key
	// is claimed with a lease (an in-flight lock that a crashed server cannot
	// hold forever) and a retention deadline.
	Claim(ctx context.Context, key Key, fingerprint string, now time.Time, lease, retention time.Duration) (Claim, error)
	// Begin starts a transaction for the handler's writes and Complete.
	Begin(ctx context.Context) (Tx, error)
	// Complete stores resp as the result of the claim token, inside tx.
	// ErrLeaseLost means another request took the key over; tx must then be
	// rolled back, undoing the handler's writes too.
	Complete(ctx context.Context, tx Tx, key Key, token string, resp Response) error
	// Release forgets an in-flight claim so the client can retry. It does
	// nothing if token no longer owns the key.
	Release(ctx context.Context, key Key, token string) error
	// Extend moves the lease of an in-flight claim to until: the heartbeat
	// of a handler that is still running. ErrLeaseLost if token no longer
	// owns the key.
	Extend(ctx context.Context, key Key, token string, until time.Time) error
	// Get returns the key's entry at time now, or ErrNotFound.
	Get(ctx context.Context, key Key, now time.Time) (Entry, error)
	Cleaner
}

// Cleaner deletes expired keys; dedupe.Cleaner has the same signature.
type Cleaner interface {
	// Cleanup deletes the keys expired at now, in bounded batches (each its
	// own short transaction), until none are left or ctx is done. It
	// returns how many it deleted.
	Cleanup(ctx context.Context, now time.Time) (int64, error)
}

// RunCleanup calls c.Cleanup(ctx, time.Now()) at once and then every
// interval until ctx is done. Errors are passed to onErr (may be nil) and do
// not stop the loop: the next tick retries. dedupe.RunCleanup is the same
// function.
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

// StoreConfig configures the SQL stores. The zero value is usable.
type StoreConfig struct {
	// Table holds the keys (default "idem_keys"); letters, digits and _.
	Table string
	// CleanupBatch bounds the rows one Cleanup transaction deletes (default 1000).
	CleanupBatch int
	// SkipSchema leaves the table to you: the store does not create it (see
	// the store package's Schema for the DDL to put in your migrations).
	SkipSchema bool
}

var (
	// ErrNotFound: no unexpired entry for the key.
	ErrNotFound = errors.New("idempotency: key not found")
	// ErrLeaseLost: the claim's lease expired and another request took the
	// key over before this one completed.
	ErrLeaseLost = errors.New("idempotency: lease lost to another request")
	// ErrNoTransaction: a store's Tx (or RequestTx) was called outside the
	// middleware, or with another store.
	ErrNoTransaction = errors.New("idempotency: no idempotency transaction in context")
)
