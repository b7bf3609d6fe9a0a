package partition

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"

	"github.com/idem-dev/idem/internal/logstore"
)

// validateRecords walks the records of an uncompressed batch, as Kafka's
// LogValidator does: each record's length must fit, offset deltas must be
// 0..n-1 in order (consumers compute offsets from them), and the records must
// fill the batch exactly. Compressed batches are stored as sent without this
// walk: decompressing producer data would let a compression bomb cost
// unbounded memory; their header checks (CRC, count) still apply.
func validateRecords(batch []byte, n int32) error {
	recs := batch[logstore.BatchHeaderSize:]
	for i := range n {
		length, w := kbin.Varint(recs)
		if w == 0 || length < 0 || int(length) > len(recs)-w {
			return fmt.Errorf("%w: record %d: bad length", ErrInvalidRecord, i)
		}
		body := recs[w : w+int(length)]
		recs = recs[w+int(length):]
		if len(body) < 1 {
			return fmt.Errorf("%w: record %d is empty", ErrInvalidRecord, i)
		}
		_, w1 := kbin.Varlong(body[1:]) // timestamp delta
		if w1 == 0 {
			return fmt.Errorf("%w: record %d: bad timestamp delta", ErrInvalidRecord, i)
		}
		delta, w2 := kbin.Varint(body[1+w1:])
		if w2 == 0 || delta != i {
			return fmt.Errorf("%w: record %d has offset delta %d", ErrInvalidRecord, i, delta)
		}
	}
	if len(recs) != 0 {
		return fmt.Errorf("%w: %d bytes after the last of %d records", ErrInvalidRecord, len(recs), n)
	}
	return nil
}
