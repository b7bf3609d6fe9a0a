package partition

import "github.com/idem-dev/idem/internal/logstore"

// writeFileAtomic and readFile are the storage layer's crash-safe small-file
// helpers, named for this package's call sites.
func writeFileAtomic(fsys logstore.FS, name string, data []byte) error {
	return logstore.WriteFileAtomic(fsys, name, data)
}

func readFile(fsys logstore.FS, name string, limit int64) ([]byte, error) {
	return logstore.ReadFile(fsys, name, limit)
}
