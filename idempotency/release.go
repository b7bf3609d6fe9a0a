package idempotency

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// releaser frees the keys of failed attempts. A release can fail for the
// same reason the attempt did (the database connection is gone); the key
// would then stay claimed for the whole lease, and every retry would get
// 409. So a failed release is remembered and retried: in the background,
// with backoff, until it succeeds or the lease would have expired anyway;
// and at once when a retry of that key reaches this server.
type releaser struct {
	store  Store
	logger *slog.Logger
	lease  time.Duration

	mu      sync.Mutex
	pending map[Key]string // key → token of a claim whose release failed
}

// release frees key's claim, or schedules it; it reports whether the key is
// free now.
func (r *releaser) release(ctx context.Context, key Key, token string) bool {
	err := r.store.Release(ctx, key, token)
	if err == nil {
		return true
	}
	r.logger.Error("idempotency: release failed; retrying in the background", "err", err)
	r.mu.Lock()
	r.pending[key] = token
	r.mu.Unlock()
	go r.background(context.WithoutCancel(ctx), key, token)
	return false
}

// retry releases key now if its release is pending; it reports whether it
// did.
func (r *releaser) retry(ctx context.Context, key Key) bool {
	r.mu.Lock()
	token, ok := r.pending[key]
	r.mu.Unlock()
	if !ok || r.store.Release(ctx, key, token) != nil {
		return false
	}
	r.forget(key, token)
	return true
}

func (r *releaser) forget(key Key, token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending[key] == token {
		delete(r.pending, key)
	}
}

func (r *releaser) background(ctx context.Context, key Key, token string) {
	defer r.forget(key, token)
	deadline := time.Now().Add(r.lease)
	for wait := 25 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 2*time.Second) {
		time.Sleep(wait)
		r.mu.Lock()
		_, still := r.pending[key]
		r.mu.Unlock()
		if !still {
			return // a retry of the key released it
		}
		if err := r.store.Release(ctx, key, token); err == nil {
			return
		}
	}
	r.logger.Error("idempotency: gave up releasing a failed attempt's key; its lease has expired by now", "scope", key.Scope, "key", key.Key)
}
