package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// segment is one file of consecutive batches starting at base. The active
// (last) segment grows; every other segment is sealed: fsynced, immutable,
// with its index persisted.
type segment struct {
	base int64
	f    *cachedFile // opened on demand, closed when idle (filecache.go)
	path string

	// The fields below are guarded by Log.mu (written with it held
	// exclusively, read with it held shared).
	size     int64       // bytes of whole batches in the file
	next     int64       // offset after the last batch
	maxTS    int64       // largest batch max timestamp (-1 when empty)
	rollTime time.Time   // when the segment becomes due for a time roll
	offIdx   []offEntry  // sparse: batch base offset → file position
	timeIdx  []timeEntry // sparse: running max timestamp → offset of the batch that set it
	// sinceOff and sinceTime count bytes appended since the last entry.
	sinceOff, sinceTime int
}

type offEntry struct {
	offset int64
	pos    int64
}

type timeEntry struct {
	ts     int64
	offset int64
}

func segmentName(base int64) string { return fmt.Sprintf("%020d.log", base) }
func indexName(base int64) string   { return fmt.Sprintf("%020d.index", base) }

// parseSegmentName returns the base offset of a "<20 digits>.<ext>" name.
func parseSegmentName(name, ext string) (int64, bool) {
	stem, ok := strings.CutSuffix(name, ext)
	if !ok || len(stem) != 20 {
		return 0, false
	}
	base, err := strconv.ParseInt(stem, 10, 64)
	if err != nil || base < 0 {
		return 0, false
	}
	return base, true
}

// track records a batch of n bytes written at pos in the in-memory indexes.
func (s *segment) track(h BatchHeader, pos int64, n int, indexInterval int) {
	if len(s.offIdx) == 0 || s.sinceOff >= indexInterval {
		s.offIdx = append(s.offIdx, offEntry{offset: h.BaseOffset, pos: pos})
		s.sinceOff = 0
	}
	s.sinceOff += n
	if h.MaxTimestamp > s.maxTS {
		if len(s.timeIdx) == 0 || s.sinceTime >= indexInterval {
			s.timeIdx = append(s.timeIdx, timeEntry{ts: h.MaxTimestamp, offset: h.BaseOffset})
			s.sinceTime = 0
		}
		s.maxTS = h.MaxTimestamp
	}
	s.sinceTime += n
	s.size = pos + int64(n)
	s.next = h.NextOffset()
}

// positionFor returns a file position at or before the batch holding offset.
func (s *segment) positionFor(offset int64) int64 {
	pos, _, _ := s.indexEntryFor(offset)
	return pos
}

// indexEntryFor returns the last index entry at or before offset: the
// position of a batch and its base offset (ok), or position 0 and ok false
// when offset lies before the first entry.
func (s *segment) indexEntryFor(offset int64) (pos, base int64, ok bool) {
	i := sort.Search(len(s.offIdx), func(i int) bool { return s.offIdx[i].offset > offset })
	if i == 0 {
		return 0, 0, false
	}
	return s.offIdx[i-1].pos, s.offIdx[i-1].offset, true
}

// timeScanStart returns an offset at or before the first batch whose max
// timestamp is >= ts: batches before the last entry below ts cannot qualify,
// because the running maximum was still below ts when that entry was made.
func (s *segment) timeScanStart(ts int64) int64 {
	i := sort.Search(len(s.timeIdx), func(i int) bool { return s.timeIdx[i].ts >= ts })
	if i == 0 {
		return s.base
	}
	return s.timeIdx[i-1].offset
}

// scanResult is what scanning a segment file found.
type scanResult struct {
	valid   int64 // bytes of whole valid batches from the start
	batches int   // how many valid batches
	badErr  error // why scanning stopped before the end (nil at a clean end)
}

// scan validates every batch of the segment's bytes in r from position 0,
// rebuilding the in-memory indexes as it goes. It stops at the first invalid
// batch, a batch whose offset does not follow on (nor carries a gap mark),
// or the end of the file. r is the segment's file, or a read-only handle
// of a tool that must not open it for writing (Inspect).
func (s *segment) scan(r io.ReaderAt, fileSize int64, indexInterval int) (scanResult, error) {
	s.size, s.next, s.maxTS = 0, s.base, -1
	s.offIdx, s.timeIdx, s.sinceOff, s.sinceTime = nil, nil, 0, 0
	return s.resume(r, fileSize, indexInterval)
}

// resume validates the batches after the ones the segment already tracks
// (s.size, s.next, the indexes), as scan does from the start. Recovery uses
// it after loading the index a clean shutdown or a checkpoint persisted for
// the active segment, so only its tail is read.
func (s *segment) resume(r io.ReaderAt, fileSize int64, indexInterval int) (scanResult, error) {
	buf := make([]byte, BatchHeaderSize)
	pos := s.size
	batches := 0
	for pos < fileSize {
		if fileSize-pos < BatchHeaderSize {
			return scanResult{valid: pos, badErr: fmt.Errorf("%w: %d trailing bytes are shorter than a batch header", ErrInvalidBatch, fileSize-pos)}, nil
		}
		// Read the header, then only the rest of the batch: the tail is
		// read once, byte for byte.
		if _, err := readFull(r, buf[:BatchHeaderSize], pos); err != nil {
			return scanResult{}, err
		}
		h := decodeHeader(buf[:BatchHeaderSize])
		total := int64(lengthPrefix) + int64(h.Length)
		if h.Length < BatchHeaderSize-lengthPrefix || total > fileSize-pos {
			return scanResult{valid: pos, badErr: fmt.Errorf("%w: batch length %d at position %d does not fit the file", ErrInvalidBatch, h.Length, pos)}, nil
		}
		if cap(buf) < int(total) {
			buf = append(buf[:BatchHeaderSize], make([]byte, int(total)-BatchHeaderSize)...)
		}
		b := buf[:total]
		if _, err := readFull(r, b[BatchHeaderSize:], pos+BatchHeaderSize); err != nil {
			return scanResult{}, err
		}
		h, _, err := parseBatchPrefix(b)
		if err != nil {
			return scanResult{valid: pos, badErr: fmt.Errorf("at position %d: %w", pos, err)}, nil
		}
		// Offsets are outside the CRC: each batch must follow on from the
		// one before, or carry the mark of a batch after a gap the cleaner
		// left (compact_offsets.go).
		if err := followsOn(h, s.next); err != nil {
			return scanResult{valid: pos, badErr: fmt.Errorf("at position %d: %w", pos, err)}, nil
		}
		s.track(h, pos, int(total), indexInterval)
		pos += total
		batches++
	}
	return scanResult{valid: pos, batches: batches}, nil
}

// readFull reads exactly len(p) bytes at off.
func readFull(r io.ReaderAt, p []byte, off int64) (int, error) {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Index file format (big-endian), one per sealed segment:
//
//	"IDX1" | segSize int64 | next int64 | maxTS int64 |
//	nOff uint32 | nOff × (offset int64, pos int64) |
//	nTime uint32 | nTime × (ts int64, offset int64) | crc32c of all before
const indexMagic = "IDX1"

func (s *segment) encodeIndex() []byte {
	return encodeIndex(s.size, s.next, s.maxTS, s.offIdx, s.timeIdx)
}

// encodeIndexPrefix encodes the index of the segment's first size bytes,
// which hold the batches below next with largest timestamp maxTS.
func (s *segment) encodeIndexPrefix(size, next, maxTS int64) []byte {
	offs := s.offIdx
	for len(offs) > 0 && offs[len(offs)-1].pos >= size {
		offs = offs[:len(offs)-1]
	}
	times := s.timeIdx
	for len(times) > 0 && times[len(times)-1].offset >= next {
		times = times[:len(times)-1]
	}
	return encodeIndex(size, next, maxTS, offs, times)
}

func encodeIndex(size, next, maxTS int64, offIdx []offEntry, timeIdx []timeEntry) []byte {
	be := binary.BigEndian
	b := make([]byte, 0, 4+24+8+16*(len(offIdx)+len(timeIdx))+4)
	b = append(b, indexMagic...)
	b = be.AppendUint64(b, uint64(size))
	b = be.AppendUint64(b, uint64(next))
	b = be.AppendUint64(b, uint64(maxTS))
	b = be.AppendUint32(b, uint32(len(offIdx)))
	for _, e := range offIdx {
		b = be.AppendUint64(b, uint64(e.offset))
		b = be.AppendUint64(b, uint64(e.pos))
	}
	b = be.AppendUint32(b, uint32(len(timeIdx)))
	for _, e := range timeIdx {
		b = be.AppendUint64(b, uint64(e.ts))
		b = be.AppendUint64(b, uint64(e.offset))
	}
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadIndex = errors.New("index file invalid")

// decodeIndex loads a persisted index, trusting it only if its checksum holds,
// it describes a file of exactly fileSize bytes, and its entries are ordered
// and inside the segment.
func (s *segment) decodeIndex(b []byte, fileSize int64) error {
	return s.decodeIndexOf(b, fileSize, false)
}

// decodeIndexPrefix loads the index persisted for the active segment: it may
// describe only a prefix of the file (the batches durable when it was
// written); recovery validates the rest.
func (s *segment) decodeIndexPrefix(b []byte, fileSize int64) error {
	return s.decodeIndexOf(b, fileSize, true)
}

func (s *segment) decodeIndexOf(b []byte, fileSize int64, prefix bool) error {
	be := binary.BigEndian
	if len(b) < 4+24+4+4+4 || string(b[:4]) != indexMagic {
		return errBadIndex
	}
	body, sum := b[:len(b)-4], be.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return errBadIndex
	}
	r := body[4:]
	size, next, maxTS := int64(be.Uint64(r)), int64(be.Uint64(r[8:])), int64(be.Uint64(r[16:]))
	r = r[24:]
	if (size != fileSize && !prefix) || size > fileSize || next < s.base {
		return errBadIndex
	}
	readPairs := func() ([][2]int64, bool) {
		if len(r) < 4 {
			return nil, false
		}
		n := int(be.Uint32(r))
		r = r[4:]
		if n < 0 || n > len(r)/16 {
			return nil, false
		}
		out := make([][2]int64, n)
		for i := range out {
			out[i] = [2]int64{int64(be.Uint64(r)), int64(be.Uint64(r[8:]))}
			r = r[16:]
		}
		return out, true
	}
	offs, ok1 := readPairs()
	times, ok2 := readPairs()
	if !ok1 || !ok2 || len(r) != 0 {
		return errBadIndex
	}
	offIdx := make([]offEntry, len(offs))
	for i, p := range offs {
		if p[0] < s.base || p[0] >= next || p[1] < 0 || p[1] >= size || (i > 0 && (p[0] <= offIdx[i-1].offset || p[1] <= offIdx[i-1].pos)) {
			return errBadIndex
		}
		offIdx[i] = offEntry{offset: p[0], pos: p[1]}
	}
	timeIdx := make([]timeEntry, len(times))
	for i, p := range times {
		if p[1] < s.base || p[1] >= next || (i > 0 && (p[0] <= timeIdx[i-1].ts || p[1] < timeIdx[i-1].offset)) {
			return errBadIndex
		}
		timeIdx[i] = timeEntry{ts: p[0], offset: p[1]}
	}
	s.size, s.next, s.maxTS, s.offIdx, s.timeIdx = size, next, maxTS, offIdx, timeIdx
	return nil
}
