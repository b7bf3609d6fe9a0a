package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
)

// The checkpoint file records the recovery point (every offset below it was
// fsynced, so damage below it is corruption, not a torn tail) and the log
// start offset. It is replaced atomically: write a temporary file, fsync it,
// rename it over the old one, fsync the directory. Every write carries a new
// generation, which the data directory's shared recovery-point file names
// so that its entries apply only to the checkpoint they advance
// (recoverypoints.go).
//
//	"CKP2" | generation uint64 | recoveryPoint int64 | logStart int64 | crc32c of all before
//	"CKP1" | recoveryPoint int64 | logStart int64 | crc32c (read as generation 0)
const (
	checkpointName   = "checkpoint"
	checkpointMagic  = "CKP2"
	checkpointSize   = 4 + 8 + 8 + 8 + 4
	checkpointMagic1 = "CKP1"
	checkpointSize1  = 4 + 8 + 8 + 4
)

type checkpoint struct {
	recovery int64
	start    int64
}

func encodeCheckpoint(c checkpoint, gen uint64) []byte {
	be := binary.BigEndian
	b := make([]byte, 0, checkpointSize)
	b = append(b, checkpointMagic...)
	b = be.AppendUint64(b, gen)
	b = be.AppendUint64(b, uint64(c.recovery))
	b = be.AppendUint64(b, uint64(c.start))
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadCheckpoint = errors.New("checkpoint invalid")

func decodeCheckpoint(b []byte) (checkpoint, uint64, error) {
	be := binary.BigEndian
	var gen uint64
	var fields []byte // recoveryPoint | logStart
	switch {
	case len(b) == checkpointSize && string(b[:4]) == checkpointMagic:
		gen, fields = be.Uint64(b[4:]), b[12:28]
	case len(b) == checkpointSize1 && string(b[:4]) == checkpointMagic1:
		fields = b[4:20]
	default:
		return checkpoint{}, 0, errBadCheckpoint
	}
	if crc32.Checksum(b[:len(b)-4], castagnoli) != be.Uint32(b[len(b)-4:]) {
		return checkpoint{}, 0, errBadCheckpoint
	}
	c := checkpoint{recovery: int64(be.Uint64(fields)), start: int64(be.Uint64(fields[8:]))}
	if c.recovery < 0 || c.start < 0 {
		return checkpoint{}, 0, errBadCheckpoint
	}
	return c, gen, nil
}

// readCheckpoint returns the checkpoint and its generation, or ok=false when there is none or it
// does not validate; recovery then falls back to what the segments prove.
func readCheckpoint(fsys FS, dir string) (checkpoint, uint64, bool, error) {
	b, err := readWholeFile(fsys, join(dir, checkpointName), 64)
	if errors.Is(err, fs.ErrNotExist) {
		return checkpoint{}, 0, false, nil
	}
	if err != nil {
		return checkpoint{}, 0, false, err
	}
	c, gen, err := decodeCheckpoint(b)
	return c, gen, err == nil, nil
}

// writeFileAtomic replaces dir/name with data durably.
func writeFileAtomic(fsys FS, dir, name string, data []byte) error {
	return WriteFileAtomic(fsys, join(dir, name), data)
}

// WriteFileAtomic replaces name with data so that after a crash the file is
// either the old or the new version, durably: write name+".tmp", fsync it,
// rename it over name, fsync the directory. Every small metadata file of the
// broker (checkpoints, catalog, snapshots, producer-id reservations) is
// written this way.
func WriteFileAtomic(fsys FS, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := fsys.Create(tmp)
	if err != nil {
		return noSpace(err)
	}
	if err := writeAndSync(f, data); err != nil {
		// A full disk must not leave an empty .tmp behind.
		fsys.Remove(tmp)
		return noSpace(err)
	}
	if err := fsys.Rename(tmp, name); err != nil {
		fsys.Remove(tmp)
		return err
	}
	return fsys.SyncDir(filepath.Dir(name))
}

func writeAndSync(f File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readWholeFile is ReadFile.
func readWholeFile(fsys FS, name string, limit int64) ([]byte, error) {
	return ReadFile(fsys, name, limit)
}

// ReadFile reads a whole file of at most limit bytes; a larger one is an
// error rather than an allocation the file's size dictates.
func ReadFile(fsys FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("logstore: %s is %d bytes, more than the %d allowed", name, size, limit)
	}
	b := make([]byte, size)
	if _, err := readFull(f, b, 0); err != nil {
		return nil, err
	}
	return b, nil
}
