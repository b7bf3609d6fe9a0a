package topics

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"sync"

	"github.com/idem-dev/idem/internal/logstore"
)

// IDAllocator hands out idempotent producer ids that are never reused, across
// restarts, kill -9 and power loss. It reserves ids in blocks: before handing
// out any id of a block it durably records the block's end, and on start it
// resumes after the last recorded end. A crash therefore skips at most one
// block of ids and never repeats one.
type IDAllocator struct {
	fs   logstore.FS
	path string

	fresh bool // no reservation file existed
	disk  *logstore.Disk

	mu       sync.Mutex
	next     int64 // mu guards next and reserved: the next id to hand out
	reserved int64 // ids below reserved are covered by the durable file
}

// castagnoli is the CRC-32C table of the reservation file.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// idBlock is how many ids one fsync reserves.
const idBlock = 1000

// OpenIDAllocator loads (or creates) the reservation file at path.
func OpenIDAllocator(fsys logstore.FS, path string) (*IDAllocator, error) {
	a := &IDAllocator{fs: fsys, path: path}
	data, err := logstore.ReadFile(fsys, path, 1024)
	if err == nil {
		if len(data) != 12 || crc32.Checksum(data[:8], castagnoli) != binary.BigEndian.Uint32(data[8:]) {
			// The file is only ever replaced atomically, so damage is not a torn
			// write; refusing to start is safer than risking id reuse.
			return nil, fmt.Errorf("producer ids: %s is damaged; refusing to guess where ids resume", path)
		}
		a.reserved = int64(binary.BigEndian.Uint64(data))
		a.next = a.reserved
	} else if _, serr := fsys.Stat(path); serr == nil {
		return nil, fmt.Errorf("producer ids: %w", err)
	} else {
		a.fresh = true
	}
	return a, nil
}

// UseDisk lets reservations draw on the disk reserve when the disk is full.
func (a *IDAllocator) UseDisk(d *logstore.Disk) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.disk = d
}

// Fresh reports whether no reservation file existed when it was opened.
func (a *IDAllocator) Fresh() bool { return a.fresh }

// SkipTo makes every later id at least min. A broker whose reservation file
// went missing while partitions still hold producer state calls it with a
// value above every recorded id: reusing one would make a new producer's
// first batches look like retries of an old producer's and be dropped.
func (a *IDAllocator) SkipTo(min int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next < min {
		a.next = min
	}
}

// Init writes the reservation file of a fresh allocator, so that a later
// start can tell a missing file (data whose ids must be skipped) from data
// that never had a producer.
func (a *IDAllocator) Init() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.fresh {
		return nil
	}
	if err := a.reserveLocked(a.next); err != nil {
		return err
	}
	a.fresh = false
	return nil
}

func (a *IDAllocator) reserveLocked(end int64) error {
	b := binary.BigEndian.AppendUint64(nil, uint64(end))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if err := a.disk.Do(func() error { return logstore.WriteFileAtomic(a.fs, a.path, b) }); err != nil {
		return fmt.Errorf("producer ids: reserving a block: %w", err)
	}
	a.reserved = end
	return nil
}

// Next returns a fresh producer id (with epoch 0 for the caller to use).
func (a *IDAllocator) Next() (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next >= a.reserved {
		end := a.next + idBlock
		if end < 0 || end == math.MaxInt64 {
			return 0, fmt.Errorf("producer ids exhausted")
		}
		if err := a.reserveLocked(end); err != nil {
			return 0, err
		}
	}
	id := a.next
	a.next++
	return id, nil
}
