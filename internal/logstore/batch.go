package logstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Record batch v2 layout (big-endian), as Kafka writes it on the wire and on disk:
//
//	 0 baseOffset int64          the log assigns it; not covered by the CRC
//	 8 batchLength int32         bytes after this field
//	12 partitionLeaderEpoch int32
//	16 magic int8                always 2
//	17 crc uint32                CRC-32C of bytes [21, end)
//	21 attributes int16          compression (bits 0-2), timestamp type (3), transactional (4), control (5)
//	23 lastOffsetDelta int32
//	27 firstTimestamp int64
//	35 maxTimestamp int64
//	43 producerId int64
//	51 producerEpoch int16
//	53 baseSequence int32
//	57 recordCount int32
//	61 records…
const (
	// BatchHeaderSize is the fixed size of a v2 record batch header.
	BatchHeaderSize = 61
	// lengthPrefix is how many leading bytes are not counted by batchLength.
	lengthPrefix = 12
	crcStart     = 21

	// leaderEpoch is the partition leader epoch idem stamps on every batch:
	// a single node is leader forever, in epoch 0.
	leaderEpoch = 0

	attrCompressionMask = 0x07
	attrTransactional   = 0x10
	attrControl         = 0x20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BatchHeader is the decoded fixed header of one v2 record batch.
type BatchHeader struct {
	BaseOffset           int64
	Length               int32 // batchLength: bytes after the length field
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	FirstTimestamp       int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	NumRecords           int32
}

// LastOffset is the offset of the batch's last record.
func (h BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// NextOffset is the offset right after the batch.
func (h BatchHeader) NextOffset() int64 { return h.LastOffset() + 1 }

// TotalSize is the batch's size in bytes, length prefix included.
func (h BatchHeader) TotalSize() int { return lengthPrefix + int(h.Length) }

// IsTransactional reports whether the batch belongs to a transaction.
func (h BatchHeader) IsTransactional() bool { return h.Attributes&attrTransactional != 0 }

// IsControl reports whether the batch holds a control record (a transaction marker).
func (h BatchHeader) IsControl() bool { return h.Attributes&attrControl != 0 }

// Compression is the codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
func (h BatchHeader) Compression() int8 { return int8(h.Attributes & attrCompressionMask) }

// decodeHeader reads the fixed header without any validation; b must hold at
// least BatchHeaderSize bytes.
func decodeHeader(b []byte) BatchHeader {
	be := binary.BigEndian
	return BatchHeader{
		BaseOffset:           int64(be.Uint64(b[0:])),
		Length:               int32(be.Uint32(b[8:])),
		PartitionLeaderEpoch: int32(be.Uint32(b[12:])),
		Magic:                int8(b[16]),
		CRC:                  be.Uint32(b[17:]),
		Attributes:           int16(be.Uint16(b[21:])),
		LastOffsetDelta:      int32(be.Uint32(b[23:])),
		FirstTimestamp:       int64(be.Uint64(b[27:])),
		MaxTimestamp:         int64(be.Uint64(b[35:])),
		ProducerID:           int64(be.Uint64(b[43:])),
		ProducerEpoch:        int16(be.Uint16(b[51:])),
		BaseSequence:         int32(be.Uint32(b[53:])),
		NumRecords:           int32(be.Uint32(b[57:])),
	}
}

// ParseBatch validates that b holds exactly one whole v2 record batch (length,
// magic, CRC-32C, sane offset delta and record count) and returns its header.
func ParseBatch(b []byte) (BatchHeader, error) {
	h, n, err := parseBatchPrefix(b)
	if err != nil {
		return h, err
	}
	if n != len(b) {
		return h, fmt.Errorf("%w: %d trailing bytes after the batch", ErrInvalidBatch, len(b)-n)
	}
	return h, nil
}

// parseBatchPrefix validates the batch at the start of b and returns its
// header and total size. Bytes after the batch are ignored. The length field
// is checked against the bytes present before anything else is trusted.
func parseBatchPrefix(b []byte) (BatchHeader, int, error) {
	if len(b) < BatchHeaderSize {
		return BatchHeader{}, 0, fmt.Errorf("%w: %d bytes is shorter than a batch header", ErrInvalidBatch, len(b))
	}
	h := decodeHeader(b)
	if h.Length < BatchHeaderSize-lengthPrefix {
		return h, 0, fmt.Errorf("%w: batch length %d is below the minimum %d", ErrInvalidBatch, h.Length, BatchHeaderSize-lengthPrefix)
	}
	n := h.TotalSize()
	if n > len(b) {
		return h, 0, fmt.Errorf("%w: batch length %d exceeds the %d bytes present", ErrInvalidBatch, h.Length, len(b)-lengthPrefix)
	}
	if h.Magic != 2 {
		return h, 0, fmt.Errorf("%w: magic %d, only 2 is supported", ErrInvalidBatch, h.Magic)
	}
	if got := crc32.Checksum(b[crcStart:n], castagnoli); got != h.CRC {
		return h, 0, fmt.Errorf("%w: CRC mismatch (stored %08x, computed %08x)", ErrInvalidBatch, h.CRC, got)
	}
	if h.LastOffsetDelta < 0 {
		return h, 0, fmt.Errorf("%w: negative last offset delta %d", ErrInvalidBatch, h.LastOffsetDelta)
	}
	if h.NumRecords < 0 || int64(h.NumRecords) > int64(n) {
		return h, 0, fmt.Errorf("%w: record count %d impossible in %d bytes", ErrInvalidBatch, h.NumRecords, n)
	}
	return h, n, nil
}

// SetBaseOffset writes the log-assigned base offset into a batch in place.
// The CRC does not cover the base offset, so the batch stays valid.
func SetBaseOffset(b []byte, off int64) { binary.BigEndian.PutUint64(b[0:], uint64(off)) }

// FixCRC recomputes the CRC-32C of a batch built in memory (for example with
// kmsg.RecordBatch.AppendTo, which leaves the CRC to the caller).
func FixCRC(b []byte) {
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[crcStart:], castagnoli))
}
