package logstore

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record is one key/value record of an uncompressed batch that the broker
// writes to its own logs (consumer offsets, transaction state), in Kafka's
// on-disk format so that the same recovery and checks cover them.
type Record struct{ Key, Value []byte }

// EncodeBatch builds one uncompressed v2 batch holding recs, CRC included,
// with the given attributes (transactional and control bits) and producer
// (-1, -1 for none). Every record carries timestamp ts (Unix milliseconds).
func EncodeBatch(recs []Record, ts int64, attrs int16, producerID int64, producerEpoch int16) []byte {
	var raw []byte
	for i, r := range recs {
		rec := kmsg.Record{OffsetDelta: int32(i), Key: r.Key, Value: r.Value}
		body := rec.AppendTo(nil) // with Length 0 the length prefix is one byte
		rec.Length = int32(len(body) - 1)
		raw = rec.AppendTo(raw)
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(len(recs) - 1),
		FirstTimestamp:       ts,
		MaxTimestamp:         ts,
		ProducerID:           producerID,
		ProducerEpoch:        producerEpoch,
		FirstSequence:        -1,
		NumRecords:           int32(len(recs)),
		Records:              raw,
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-lengthPrefix))
	FixCRC(out)
	return out
}

// DecodeRecords validates one uncompressed batch and calls fn for each of its
// records with the batch header and the record's offset. Record lengths are
// checked against the bytes present before anything is decoded.
func DecodeRecords(batch []byte, fn func(h BatchHeader, offset int64, r Record) error) error {
	h, err := ParseBatch(batch)
	if err != nil {
		return err
	}
	if h.Compression() != 0 {
		return fmt.Errorf("%w: compressed batch at offset %d where only uncompressed ones are written", ErrInvalidBatch, h.BaseOffset)
	}
	raw := batch[BatchHeaderSize:]
	for i := int32(0); i < h.NumRecords; i++ {
		l, n := binary.Varint(raw)
		if n <= 0 || l < 0 || int64(len(raw)-n) < l {
			return fmt.Errorf("%w: truncated record %d in batch at offset %d", ErrInvalidBatch, i, h.BaseOffset)
		}
		var rec kmsg.Record
		if err := rec.ReadFrom(raw[:n+int(l)]); err != nil {
			return fmt.Errorf("%w: bad record %d in batch at offset %d: %v", ErrInvalidBatch, i, h.BaseOffset, err)
		}
		raw = raw[n+int(l):]
		if err := fn(h, h.BaseOffset+int64(rec.OffsetDelta), Record{Key: rec.Key, Value: rec.Value}); err != nil {
			return err
		}
	}
	return nil
}
