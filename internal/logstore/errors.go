package logstore

import "errors"

var (
	// ErrCorrupt reports damage below the durable point: acknowledged data
	// that no longer validates. The log refuses to serve rather than drop it.
	ErrCorrupt = errors.New("logstore: corrupt log below the durable point")
	// ErrPoisoned reports that an fsync failed earlier; the log accepts no
	// more writes because it can no longer promise what is on disk.
	ErrPoisoned = errors.New("logstore: log poisoned by a failed fsync")
	// ErrClosed is returned by operations on a closed log.
	ErrClosed = errors.New("logstore: log closed")
	// ErrInvalidBatch rejects a batch that is not one whole, valid v2 record batch.
	ErrInvalidBatch = errors.New("logstore: invalid record batch")
	// ErrOffsetOutOfRange is returned for reads below the log start or past the end.
	ErrOffsetOutOfRange = errors.New("logstore: offset out of range")
)
