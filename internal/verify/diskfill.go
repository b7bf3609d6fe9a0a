package verify

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Filler is a Disk that fills a file system by writing a filler file into
// Dir until writes fail with ENOSPC, and frees it by removing the file. Dir
// should be the root of a small file system made for the purpose (a tmpfs:
// see testkit.Tmpfs) holding the broker's data directory, so that filling
// it costs little and touches nothing else.
type Filler struct {
	Dir string

	mu   sync.Mutex
	size int64 // bytes the filler holds; 0 when freed
}

// fillerName is the filler file's name in Filler.Dir.
const fillerName = "verify-disk-filler"

// Fill implements Disk: it writes 1 MiB blocks, then 4 KiB blocks, until the
// file system refuses them, so that at most a page of space is left.
func (f *Filler) Fill() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := filepath.Join(f.Dir, fillerName)
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return "already full", nil
		}
		return "", err
	}
	defer fh.Close()
	blocks := make([]byte, 1<<20)
	for _, size := range []int{1 << 20, 4 << 10} {
		for {
			n, err := fh.Write(blocks[:size])
			f.size += int64(n)
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
				return "", fmt.Errorf("verify: fill %s: %w", f.Dir, err)
			}
			break
		}
	}
	return fmt.Sprintf("%s filled with %.1f MiB until ENOSPC", f.Dir, float64(f.size)/(1<<20)), nil
}

// Free implements Disk: it removes the filler file.
func (f *Filler) Free() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := os.Remove(filepath.Join(f.Dir, fillerName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("verify: free %s: %w", f.Dir, err)
	}
	n := f.size
	f.size = 0
	return fmt.Sprintf("%.1f MiB given back", float64(n)/(1<<20)), nil
}
