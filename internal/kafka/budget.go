package kafka

import (
	"context"
	"sync"
)

// Budget is the broker-wide memory budget for what connections buffer
// (queued.max.request.bytes): large request frames take their size before
// their body is read, and Fetch answers take the record bytes they read from
// the log until they are written. A connection that cannot get budget waits
// (a request) or answers with less data (a Fetch); it never allocates past
// the budget by more than one frame or one batch.
//
// A request larger than the whole budget is admitted when nothing else holds
// any, so that no single frame can wait forever.
type Budget struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	changed chan struct{} // closed and replaced on every Release
}

// NewBudget returns a budget of limit bytes; limit <= 0 returns nil, which
// every method treats as unlimited.
func NewBudget(limit int64) *Budget {
	if limit <= 0 {
		return nil
	}
	return &Budget{limit: limit, changed: make(chan struct{})}
}

// Acquire takes n bytes, waiting until they are free or ctx ends.
func (b *Budget) Acquire(ctx context.Context, n int64) (waited bool, err error) {
	if b == nil || n <= 0 {
		return false, nil
	}
	for {
		b.mu.Lock()
		if b.used+n <= b.limit || b.used == 0 {
			b.used += n
			b.mu.Unlock()
			return waited, nil
		}
		ch := b.changed
		b.mu.Unlock()
		waited = true
		select {
		case <-ch:
		case <-ctx.Done():
			return waited, ctx.Err()
		}
	}
}

// Grab takes up to want bytes without waiting, but nothing when fewer than
// least are free; it returns what it took.
func (b *Budget) Grab(want, least int64) int64 {
	if b == nil {
		return want
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	free := b.limit - b.used
	if free < least || want <= 0 {
		return 0
	}
	n := min(want, free)
	b.used += n
	return n
}

// Force takes n bytes even past the limit: for a read that must return at
// least one whole batch, however large.
func (b *Budget) Force(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	b.used += n
	b.mu.Unlock()
}

// Release gives back n bytes and wakes waiters.
func (b *Budget) Release(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// Used reports the bytes taken.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
