package logstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Offset continuity with compaction.
//
// A batch's base offset is outside its CRC, so the log proves it another
// way: in a segment nobody has cleaned, every batch starts where the one
// before ended (the segment's first at the segment's base) and carries
// leader epoch 0. The cleaner removes batches, which leaves gaps; a batch
// that starts after a gap carries, in its partition-leader-epoch field (also
// outside the CRC, and always 0 for idem), a check value of its own base
// offset instead: gapMark(base). So every batch's base offset is still
// covered: by its predecessor's end, or by its mark. A damaged base offset
// or epoch is caught either way; only a double fault that forges both a
// plausible offset and its CRC-32C mark could pass. Reads restore the epoch
// to 0 before serving, so clients never see a mark.

// gapMarkFlag keeps every mark negative, so a mark is never a valid epoch.
const gapMarkFlag = 1 << 31

// gapMark is the leader-epoch value of a batch that follows a gap.
func gapMark(base int64) int32 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(base))
	return int32(crc32.Checksum(b[:], castagnoli) | gapMarkFlag)
}

// afterGap reports whether h carries the mark of a batch that follows a gap.
func afterGap(h BatchHeader) bool { return h.PartitionLeaderEpoch == gapMark(h.BaseOffset) }

// followsOn checks that h may come where offset next is due: exactly there
// with epoch 0, or later with its gap mark.
func followsOn(h BatchHeader, next int64) error {
	switch {
	case h.PartitionLeaderEpoch == leaderEpoch && h.BaseOffset == next:
		return nil
	case h.BaseOffset > next && afterGap(h):
		return nil
	case h.PartitionLeaderEpoch == leaderEpoch:
		return fmt.Errorf("%w: base offset %d, expected %d", ErrInvalidBatch, h.BaseOffset, next)
	case h.BaseOffset > next:
		return fmt.Errorf("%w: batch at offset %d after a gap from %d has a bad mark %d", ErrInvalidBatch, h.BaseOffset, next, h.PartitionLeaderEpoch)
	}
	return fmt.Errorf("%w: base offset %d (leader epoch %d), expected %d", ErrInvalidBatch, h.BaseOffset, h.PartitionLeaderEpoch, next)
}

// offsetFieldsValid checks a batch found through an index entry for offset
// base: the index records each batch's real base offset.
func offsetFieldsValid(h BatchHeader, base int64) error {
	if h.BaseOffset != base {
		return fmt.Errorf("%w: base offset %d where the index has %d", ErrInvalidBatch, h.BaseOffset, base)
	}
	if h.PartitionLeaderEpoch != leaderEpoch && !afterGap(h) {
		return fmt.Errorf("%w: batch at offset %d has leader epoch %d", ErrInvalidBatch, h.BaseOffset, h.PartitionLeaderEpoch)
	}
	return nil
}

// stampOffsetFields sets the epoch field of a batch the cleaner writes where
// offset next is due: 0 when it follows on, its gap mark when it does not.
func stampOffsetFields(b []byte, next int64) {
	base := int64(binary.BigEndian.Uint64(b))
	epoch := int32(leaderEpoch)
	if base != next {
		epoch = gapMark(base)
	}
	binary.BigEndian.PutUint32(b[12:], uint32(epoch))
}

// clearGapMark restores a served batch's leader epoch to 0.
func clearGapMark(b []byte) { binary.BigEndian.PutUint32(b[12:], uint32(leaderEpoch)) }
