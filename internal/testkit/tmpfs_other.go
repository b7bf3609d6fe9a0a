//go:build !linux

package testkit

import "testing"

// Tmpfs is only on Linux; elsewhere the test ends through Unavailable.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	Unavailable(t, "a tmpfs mount (Linux only)")
	return ""
}
