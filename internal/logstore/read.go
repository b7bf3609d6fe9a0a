package logstore

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
)

// segmentFor returns the index of the segment holding offset; mu must be held.
func (l *Log) segmentFor(offset int64) int {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset })
	return max(i-1, 0)
}

// Read returns whole batches as stored, starting with the batch that holds
// offset, as Kafka's fetch does: at most maxBytes, but always at least one
// batch if any is readable, and never a batch whose last offset is at or
// beyond maxOffset (the high watermark or last stable offset). Every batch is
// checked against its CRC before it is served; a mismatch is ErrCorrupt. In
// a compacted log offset may lie in a gap the cleaner left; the read then
// starts with the first batch after it, as Kafka's does.
func (l *Log) Read(offset int64, maxBytes int, maxOffset int64) ([]byte, error) {
	return l.ReadInto(nil, offset, maxBytes, maxOffset)
}

// ReadInto is Read into buf's spare capacity: the batches start at
// buf[len(buf)], in buf's array when they fit (a caller recycling its
// buffers then allocates nothing), in a new one when they do not. buf's
// contents are not touched.
func (l *Log) ReadInto(buf []byte, offset int64, maxBytes int, maxOffset int64) ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	end := l.active().next
	if offset < l.start.Load() || offset > end {
		return nil, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, offset, l.start.Load(), end)
	}
	maxOffset = min(maxOffset, end)
	if offset >= maxOffset {
		return nil, nil
	}
	out := buf[len(buf):]
	// The base offset is not covered by the CRC, so continuity is checked:
	// the first batch served must hold offset (or follow the gap offset
	// lies in), and each later one must start where the one before ended
	// or carry the mark of a batch after a gap (compact_offsets.go).
	expect := int64(-1)
	for i := l.segmentFor(offset); i < len(l.segs); i++ {
		seg := l.segs[i]
		pos, err := l.findBatchLocked(seg, offset)
		if err != nil {
			return nil, err
		}
		var full bool
		out, expect, full, err = l.copyBatchesLocked(seg, pos, out, maxBytes, maxOffset, offset, expect)
		if err != nil || full {
			return out, err
		}
		if expect < 0 {
			return nil, fmt.Errorf("%w: %s: offset %d is missing from its segment", ErrCorrupt, seg.path, offset)
		}
	}
	return out, nil
}

// findBatchLocked returns the position of the first batch in seg whose last
// offset is >= offset, walking headers forward from the sparse index. The
// offsets of the headers it walks past are checked as a scan checks them,
// from the index entry on, so a damaged base offset cannot make it skip the
// batch that holds offset.
func (l *Log) findBatchLocked(seg *segment, offset int64) (int64, error) {
	pos, base, indexed := seg.indexEntryFor(offset)
	next := seg.base
	var hdr [BatchHeaderSize]byte
	for first := true; pos < seg.size; first = false {
		if _, err := readFull(seg.f, hdr[:], pos); err != nil {
			return 0, fmt.Errorf("logstore: read %s: %w", seg.path, err)
		}
		h := decodeHeader(hdr[:])
		if h.Length < BatchHeaderSize-lengthPrefix || pos+int64(h.TotalSize()) > seg.size {
			return 0, fmt.Errorf("%w: %s: bad batch length %d at position %d", ErrCorrupt, seg.path, h.Length, pos)
		}
		var err error
		if first && indexed {
			err = offsetFieldsValid(h, base)
		} else {
			err = followsOn(h, next)
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %s at position %d: %v", ErrCorrupt, seg.path, pos, err)
		}
		if h.LastOffset() >= offset {
			return pos, nil
		}
		next = h.NextOffset()
		pos += int64(h.TotalSize())
	}
	return pos, nil
}

// copyBatchesLocked appends whole batches of seg from pos to out. It reports
// full once the byte budget or maxOffset stops the read. target is the offset
// the read asked for; expect is the offset the next batch must start at (or,
// with a gap mark, after), or -1 before the first batch, which must hold
// target or follow the gap it lies in. It returns the new expect. Gap marks
// are cleared in the copies served.
func (l *Log) copyBatchesLocked(seg *segment, pos int64, out []byte, maxBytes int, maxOffset, target, expect int64) ([]byte, int64, bool, error) {
	corrupt := func(at int64, format string, args ...any) error {
		return fmt.Errorf("%w: %s at position %d: %s", ErrCorrupt, seg.path, at, fmt.Sprintf(format, args...))
	}
	for pos < seg.size {
		want := int64(maxBytes - len(out))
		if len(out) == 0 {
			// The first batch is served whole even if it exceeds maxBytes.
			var lenBuf [lengthPrefix]byte
			if _, err := readFull(seg.f, lenBuf[:], pos); err != nil {
				return out, expect, true, fmt.Errorf("logstore: read %s: %w", seg.path, err)
			}
			want = max(want, lengthPrefix+int64(int32(binary.BigEndian.Uint32(lenBuf[8:]))))
		}
		want = min(want, seg.size-pos)
		if want < BatchHeaderSize {
			return out, expect, true, nil
		}
		old := len(out)
		// Grown without zeroing when there is room: what the spare
		// capacity held is overwritten by the read, and only bytes read
		// and validated are ever returned.
		out = slices.Grow(out, int(want))[:old+int(want)]
		if _, err := readFull(seg.f, out[old:], pos); err != nil {
			return out[:old], expect, true, fmt.Errorf("logstore: read %s: %w", seg.path, err)
		}
		chunk, used := out[old:], 0
		stop := false
		for len(chunk)-used >= BatchHeaderSize {
			at := pos + int64(used)
			h := decodeHeader(chunk[used:])
			total := h.TotalSize()
			if h.Length < BatchHeaderSize-lengthPrefix || at+int64(total) > seg.size {
				return out[:old+used], expect, true, corrupt(at, "batch length %d does not fit the segment", h.Length)
			}
			if total > len(chunk)-used {
				break // the next batch does not fit the budget
			}
			// Offsets first: the base offset is outside the CRC, and a
			// damaged one must not pass for "beyond maxOffset".
			if expect >= 0 {
				if err := followsOn(h, expect); err != nil {
					return out[:old+used], expect, true, corrupt(at, "%v", err)
				}
			} else if h.LastOffset() < target || (h.BaseOffset > target && !afterGap(h)) || (h.BaseOffset <= target && h.PartitionLeaderEpoch != leaderEpoch && !afterGap(h)) {
				return out[:old+used], expect, true, corrupt(at, "batch %d..%d (leader epoch %d) found for offset %d", h.BaseOffset, h.LastOffset(), h.PartitionLeaderEpoch, target)
			}
			if _, _, err := parseBatchPrefix(chunk[used : used+total]); err != nil {
				return out[:old+used], expect, true, corrupt(at, "%v", err)
			}
			if h.LastOffset() >= maxOffset {
				stop = true
				break
			}
			if h.PartitionLeaderEpoch != leaderEpoch {
				clearGapMark(chunk[used:])
			}
			expect = h.NextOffset()
			used += total
		}
		out = out[:old+used]
		pos += int64(used)
		if stop || used == 0 {
			return out, expect, true, nil
		}
	}
	return out, expect, false, nil
}

// OffsetForTime returns the base offset of the first batch whose max
// timestamp is >= ts (ListOffsets by timestamp), or false if there is none.
func (l *Log) OffsetForTime(ts int64) (int64, bool, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, false, ErrClosed
	}
	start := l.start.Load()
	for _, seg := range l.segs {
		if seg.maxTS < ts {
			continue
		}
		pos := seg.positionFor(max(seg.timeScanStart(ts), start))
		var hdr [BatchHeaderSize]byte
		for pos < seg.size {
			if _, err := readFull(seg.f, hdr[:], pos); err != nil {
				return 0, false, fmt.Errorf("logstore: read %s: %w", seg.path, err)
			}
			h := decodeHeader(hdr[:])
			if h.Length < BatchHeaderSize-lengthPrefix {
				return 0, false, fmt.Errorf("%w: %s: bad batch length at position %d", ErrCorrupt, seg.path, pos)
			}
			if h.MaxTimestamp >= ts && h.LastOffset() >= start {
				return max(h.BaseOffset, start), true, nil
			}
			pos += int64(h.TotalSize())
		}
	}
	return 0, false, nil
}

// MaxTimestamp returns the largest batch timestamp in the log and the base
// offset of a batch carrying it (ListOffsets with timestamp -3).
func (l *Log) MaxTimestamp() (ts, offset int64, ok bool, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	best := int64(-1)
	var bestSeg *segment
	for _, seg := range l.segs {
		if seg.maxTS > best {
			best, bestSeg = seg.maxTS, seg
		}
	}
	if bestSeg == nil {
		return 0, 0, false, nil
	}
	var hdr [BatchHeaderSize]byte
	for pos := bestSeg.positionFor(bestSeg.timeScanStart(best)); pos < bestSeg.size; {
		if _, err := readFull(bestSeg.f, hdr[:], pos); err != nil {
			return 0, 0, false, err
		}
		h := decodeHeader(hdr[:])
		if h.MaxTimestamp == best {
			return best, h.BaseOffset, true, nil
		}
		pos += int64(h.TotalSize())
	}
	return 0, 0, false, nil
}

// Scan calls fn for each batch from the one holding from up to the current
// end, without holding the log's lock during fn. The batch slice is only
// valid during the call.
func (l *Log) Scan(from int64, fn func(h BatchHeader, batch []byte) error) error {
	off := max(from, l.StartOffset())
	for {
		end := l.EndOffset()
		b, err := l.Read(off, 1<<20, end)
		if err != nil {
			return err
		}
		if len(b) == 0 {
			if off < end {
				return fmt.Errorf("%w: no batch readable at offset %d below the end %d", ErrCorrupt, off, end)
			}
			return nil
		}
		for len(b) > 0 {
			h, n, err := parseBatchPrefix(b)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			if err := fn(h, b[:n]); err != nil {
				return err
			}
			b = b[n:]
			off = h.NextOffset()
		}
	}
}
