package testkit

import (
	"context"
	"testing"
	"time"
)

// pollInterval is how often Eventually checks its condition: short enough
// that a test waits little past the moment the condition holds.
const pollInterval = 5 * time.Millisecond

// Eventually waits until cond holds, checking it every few milliseconds,
// and fails the test, naming what it waited for, if it does not hold within
// timeout. Tests poll a condition rather than sleep a fixed time: a sleep
// is either too long or, on a loaded machine, too short.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(pollInterval) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

// Context returns a context that ends after d or when the test ends,
// whichever comes first, so no client call outlives its test.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
