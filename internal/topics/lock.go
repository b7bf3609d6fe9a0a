package topics

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LockDataDir takes an exclusive advisory lock on <dir>/.lock so that two
// brokers (or a broker and `idem storage`) never work on one data directory at
// once (they would interleave writes to the same logs). The kernel drops the
// lock when the process dies, so a kill -9 never leaves a stale lock behind.
func LockDataDir(dir string) (unlock func(), err error) {
	name := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another idem broker", dir)
		}
		return nil, fmt.Errorf("locking data directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
