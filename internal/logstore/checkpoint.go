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
// rename it over the old one, fsync the directory.
//
//	"CKP1" | recoveryPoint int64 | logStart int64 | crc32c of all before
const (
	checkpointName  = "checkpoint"
	checkpointMagic = "CKP1"
	checkpointSize  = 4 + 8 + 8 + 4
)

type checkpoint struct {
	recovery int64
	start    int64
}

func encodeCheckpoint(c checkpoint) []byte {
	be := binary.BigEndian
	b := make([]byte, 0, checkpointSize)
	b = append(b, checkpointMagic...)
	b = be.AppendUint64(b, uint64(c.recovery))
	b = be.AppendUint64(b, uint64(c.start))
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadCheckpoint = errors.New("checkpoint invalid")

func decodeCheckpoint(b []byte) (checkpoint, error) {
	be := binary.BigEndian
	if len(b) != checkpointSize || string(b[:4]) != checkpointMagic {
		return checkpoint{}, errBadCheckpoint
	}
	if crc32.Checksum(b[:checkpointSize-4], castagnoli) != be.Uint32(b[checkpointSize-4:]) {
		return checkpoint{}, errBadCheckpoint
	}
	c := checkpoint{recovery: int64(be.Uint64(b[4:])), start: int64(be.Uint64(b[12:]))}
	if c.recovery < 0 || c.start < 0 {
		return checkpoint{}, errBadCheckpoint
	}
	return c, nil
}

// readCheckpoint returns the checkpoint, or ok=false when there is none or it
// does not validate; recovery then falls back to what the segments prove.
func readCheckpoint(fsys FS, dir string) (checkpoint, bool, error) {
	b, err := readWholeFile(fsys, join(dir, checkpointName), 64)
	if errors.Is(err, fs.ErrNotExist) {
		return checkpoint{}, false, nil
	}
	if err != nil {
		return checkpoint{}, false, err
	}
	c, err := decodeCheckpoint(b)
	return c, err == nil, nil
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
