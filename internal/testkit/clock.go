package testkit

import (
	"sync"
	"time"
)

// Clock is a fake clock for code that takes a Now func (logstore.Config.Now,
// dedupe.Config.Now, idempotency.Config.Now): time stands still until the
// test moves it with Advance, so expiry and retention are tested without
// waiting. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock that reads start until it is advanced.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
