package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errStop ends a walk over records early.
var errStop = errors.New("stop")

// record is one record of a decompressed records area, as the cleaner needs
// it: where it lies, its offset and timestamp deltas, and its key.
//
//	length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
//	keyLength varint | key | valueLength varint | value | headers
type record struct {
	raw         []byte // the whole record, length prefix included
	body        []byte // raw after the length prefix
	tsDelta     int64
	tsDeltaEnd  int // index in body where the timestamp delta ends
	offsetDelta int32
	key         []byte
	hasKey      bool
	hasValue    bool
}

// eachRecord walks the n records of an uncompressed records area, checking
// every length against the bytes present, and that the records fill it.
func eachRecord(area []byte, n int32, fn func(r *record) error) error {
	bad := func(i int32, what string) error {
		return fmt.Errorf("%w: record %d: %s", ErrInvalidBatch, i, what)
	}
	var r record
	for i := range n {
		length, w := binary.Varint(area)
		if w <= 0 || length < 1 || length > int64(len(area)-w) {
			return bad(i, "bad length")
		}
		r.raw, r.body = area[:w+int(length)], area[w:w+int(length)]
		area = area[w+int(length):]
		b := r.body[1:] // attributes
		var k int
		if r.tsDelta, k = binary.Varint(b); k <= 0 {
			return bad(i, "bad timestamp delta")
		}
		b = b[k:]
		r.tsDeltaEnd = len(r.body) - len(b)
		od, k := binary.Varint(b)
		if k <= 0 || od < 0 || od > 1<<31-1 {
			return bad(i, "bad offset delta")
		}
		r.offsetDelta, b = int32(od), b[k:]
		kl, k := binary.Varint(b)
		if k <= 0 || kl < -1 || kl > int64(len(b)-k) {
			return bad(i, "bad key length")
		}
		b = b[k:]
		r.hasKey, r.key = kl >= 0, nil
		if kl >= 0 {
			r.key, b = b[:kl], b[kl:]
		}
		vl, k := binary.Varint(b)
		if k <= 0 || vl < -1 || vl > int64(len(b)-k) {
			return bad(i, "bad value length")
		}
		r.hasValue = vl >= 0
		if err := fn(&r); err != nil {
			return err
		}
	}
	if len(area) != 0 {
		return fmt.Errorf("%w: %d bytes after the last of %d records", ErrInvalidBatch, len(area), n)
	}
	return nil
}

// appendRebased appends r with its timestamp delta changed to delta (the
// batch's base timestamp moved), re-encoding its length.
func appendRebased(dst []byte, r *record, delta int64) []byte {
	var tmp [2 * binary.MaxVarintLen64]byte
	head := append(tmp[:0], r.body[0])
	head = binary.AppendVarint(head, delta)
	rest := r.body[r.tsDeltaEnd:]
	dst = binary.AppendVarint(dst, int64(len(head)+len(rest)))
	dst = append(dst, head...)
	return append(dst, rest...)
}

// errNoKey: a record without a key, which a compacted topic refuses
// because the cleaner could never keep or supersede it.
var errNoKey = errors.New("compacted topic cannot accept a record without a key")

// CheckKeys validates the records of one batch for a compacted topic: every
// record must have a key. A compressed batch is decompressed (up to
// MaxDecompressedBatch) to see its records.
func CheckKeys(batch []byte) error {
	h, err := ParseBatch(batch)
	if err != nil {
		return err
	}
	area := batch[BatchHeaderSize:]
	if h.Compression() != codecNone {
		c := codecPool.Get().(*codecs)
		defer codecPool.Put(c)
		if area, err = c.decompress(nil, h.Compression(), area, MaxDecompressedBatch); err != nil {
			return err
		}
	}
	return eachRecord(area, h.NumRecords, func(r *record) error {
		if !r.hasKey {
			return errNoKey
		}
		return nil
	})
}
