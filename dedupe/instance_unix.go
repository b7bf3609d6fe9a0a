//go:build unix

package dedupe

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// autoInstanceID picks a static group.instance.id for this process: the
// host name and the lowest slot whose lock file it can lock. The kernel
// drops the lock when the process dies, so a restart gets the same slot
// (and takes over its predecessor's partitions at once), while processes
// running side by side get different ones. It returns "" if no lock file
// can be made (then membership is dynamic).
func autoInstanceID(group string) (id string, unlock func()) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "", func() {}
	}
	sum := sha256.Sum256([]byte(group))
	base := filepath.Join(os.TempDir(), "idem-dedupe-"+hex.EncodeToString(sum[:8]))
	for slot := 0; slot < 1024; slot++ {
		f, err := os.OpenFile(base+"."+strconv.Itoa(slot)+".lock", os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return "", func() {}
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		return host + "-" + strconv.Itoa(slot), func() { f.Close() }
	}
	return "", func() {}
}
