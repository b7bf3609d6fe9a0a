package logstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

// FuzzParseBatch: the batch decoder never panics, never reads past its
// input, and accepts only batches whose length, magic and CRC all hold.
func FuzzParseBatch(f *testing.F) {
	f.Add(testBatch(1, 1, []byte("hello")))
	f.Add(testBatch(3, 99, nil))
	f.Add(make([]byte, BatchHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseBatch(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidBatch) {
				t.Fatalf("error %v does not wrap ErrInvalidBatch", err)
			}
			return
		}
		if h.TotalSize() != len(b) || h.Magic != 2 {
			t.Fatalf("accepted batch of size %d with header %+v", len(b), h)
		}
		if crc32.Checksum(b[crcStart:], castagnoli) != binary.BigEndian.Uint32(b[17:]) {
			t.Fatal("accepted a batch whose CRC does not match")
		}
		// Re-parsing the same bytes gives the same header.
		if h2, err := ParseBatch(bytes.Clone(b)); err != nil || h2 != h {
			t.Fatalf("re-parse differs: %+v, %v", h2, err)
		}
	})
}

// FuzzRecover: whatever bytes a segment file and checkpoint hold, opening
// the log never panics; it either refuses with an error or serves only
// valid, contiguous batches, and a second recovery agrees with the first.
func FuzzRecover(f *testing.F) {
	var seg []byte
	for i := range 4 {
		b := testBatch(int32(1+i), int64(i), []byte("seed"))
		SetBaseOffset(b, int64(len(seg)))
		seg = append(seg, b...)
	}
	f.Add(seg, uint8(0))
	f.Add(seg[:len(seg)-3], uint8(1))
	f.Add([]byte{}, uint8(2))
	f.Add(bytes.Repeat([]byte{0xff}, 100), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, ckpt uint8) {
		fsys := NewMemFS()
		if err := fsys.MkdirAll("/p"); err != nil {
			t.Fatal(err)
		}
		write := func(name string, b []byte) {
			fl, err := fsys.Create("/p/" + name)
			if err != nil {
				t.Fatal(err)
			}
			fl.Write(b)
			fl.Sync()
			fl.Close()
		}
		write(segmentName(0), data)
		if ckpt%4 != 0 {
			write(checkpointName, encodeCheckpoint(checkpoint{recovery: int64(ckpt % 4), start: 0}, 1))
		}
		if err := fsys.SyncDir("/p"); err != nil {
			t.Fatal(err)
		}
		cfg := Config{Logger: quietLogger}
		l, err := Open(fsys, "/p", cfg)
		if err != nil {
			return
		}
		next, end := l.StartOffset(), l.EndOffset()
		err = l.Scan(next, func(h BatchHeader, batch []byte) error {
			if _, err := ParseBatch(batch); err != nil {
				t.Fatalf("served an invalid batch: %v", err)
			}
			if h.BaseOffset != next {
				t.Fatalf("served batch at %d, expected %d", h.BaseOffset, next)
			}
			next = h.NextOffset()
			return nil
		})
		l.Close()
		if err != nil {
			t.Fatalf("recovered log does not read back: %v", err)
		}
		if next != end {
			t.Fatalf("batches end at %d, log end offset %d", next, end)
		}
		l2, err := Open(fsys.CrashClone(CrashOptions{}), "/p", cfg)
		if err != nil {
			t.Fatalf("second recovery failed: %v", err)
		}
		defer l2.Close()
		if l2.EndOffset() != end {
			t.Fatalf("second recovery ends at %d, first at %d", l2.EndOffset(), end)
		}
	})
}
