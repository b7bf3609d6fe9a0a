package testkit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes on a fresh directory and returns its
// path; cleanup unmounts it. A small file system of its own lets a test
// fill a broker's disk (verify.Filler) in a moment, without touching the
// machine's disks. Mounting needs root (CAP_SYS_ADMIN): without it the test
// ends through Unavailable (skipped, or failed under CI). Register the
// cleanups that use the mount (stopping a broker on it, saving its files)
// after calling Tmpfs, so they run before the unmount.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		Unavailable(t, "mount -t tmpfs on %s (needs root or CAP_SYS_ADMIN): %v", dir, err)
	}
	t.Cleanup(func() {
		err := syscall.Unmount(dir, 0)
		if errors.Is(err, syscall.EBUSY) {
			err = syscall.Unmount(dir, syscall.MNT_DETACH) // a straggler holds a file: detach now, free when it lets go
		}
		if err != nil {
			t.Errorf("unmount the tmpfs at %s: %v", dir, err)
		}
	})
	return dir
}
