package api

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kbin"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
)

// recordForTime finds the first visible record with timestamp >= ts
// (ListOffsets by time). The log finds the batch; within an uncompressed
// CreateTime batch the exact record is found by walking the record headers.
// For a compressed batch the batch's base offset and max timestamp are
// returned: decompressing producer-supplied data here would let a compression
// bomb cost the broker unbounded memory, and starting a consumer a few records
// early is harmless.
func recordForTime(p *partition.Partition, ts int64) (offset, timestamp int64, found bool, err error) {
	base, ok, err := p.OffsetForTime(ts)
	if err != nil || !ok {
		return -1, -1, false, err
	}
	// Read the batch holding base (at least one whole batch is returned).
	data, err := p.Read(base, 1)
	if err != nil || len(data) < logstore.BatchHeaderSize {
		return -1, -1, false, err
	}
	n := 12 + int(binary.BigEndian.Uint32(data[8:]))
	if n > len(data) || n < logstore.BatchHeaderSize {
		return base, -1, true, nil
	}
	h, err := logstore.ParseBatch(data[:n])
	if err != nil {
		return -1, -1, false, err
	}
	const logAppendTime = 0x08
	if h.Compression() != 0 || h.Attributes&logAppendTime != 0 {
		return max(h.BaseOffset, base), h.MaxTimestamp, true, nil
	}
	recs := data[logstore.BatchHeaderSize:n]
	for range h.NumRecords {
		length, w := kbin.Varint(recs)
		if w == 0 || length < 0 || int(length) > len(recs)-w {
			break
		}
		body := recs[w : w+int(length)]
		recs = recs[w+int(length):]
		if len(body) < 1 {
			break
		}
		tsDelta, w1 := kbin.Varlong(body[1:])
		if w1 == 0 {
			break
		}
		offDelta, w2 := kbin.Varint(body[1+w1:])
		if w2 == 0 {
			break
		}
		recTS, recOff := h.FirstTimestamp+tsDelta, h.BaseOffset+int64(offDelta)
		if recTS >= ts && recOff >= base {
			return recOff, recTS, true, nil
		}
	}
	// Records did not parse as expected: fall back to the batch.
	return max(h.BaseOffset, base), h.MaxTimestamp, true, nil
}
