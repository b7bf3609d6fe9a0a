// Package brokerkit is the part of idem's test kit that needs a broker:
// brokers on a crash-simulating file system, brokers as child processes
// that a test can SIGKILL, and the Kafka client helpers that tests against
// a brokertest.Broker share.
package brokerkit

import (
	"testing"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/brokerhook"
	"github.com/idem-dev/idem/internal/logstore"
)

// WithFS is the broker option that replaces the broker's file system, e.g.
// with logstore.NewMemFS() so that a test can cut it as a crash would. The
// public API does not offer it, because users cannot name logstore.FS.
func WithFS(fsys logstore.FS) broker.Option {
	return brokerhook.WithFS(fsys).(broker.Option)
}

// CrashRestart simulates a crash of b, a broker running on mem (started
// with WithFS(mem)): connections drop at once, the file system is cut at
// that instant (a power loss keeps only fsynced data; a kill -9 keeps the
// page cache too), and the broker restarts on what survived, at the same
// address. It returns the new file system, for the next crash.
func CrashRestart(t testing.TB, b *brokertest.Broker, mem *logstore.MemFS, powerLoss bool) *logstore.MemFS {
	t.Helper()
	var after *logstore.MemFS
	b.CrashRestart(t, func() []broker.Option {
		if powerLoss {
			after = mem.CrashClone(logstore.CrashOptions{})
		} else {
			after = mem.KillClone()
		}
		return []broker.Option{WithFS(after)}
	})
	return after
}
