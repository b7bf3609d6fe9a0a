package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sort"
)

// Idempotent-producer state, following Kafka's ProducerStateManager: per
// (producer id, partition) the current epoch and the last five batches, so that
// a retried batch is recognised and answered with its original offsets.

// Producer-state errors (the Kafka layer maps them to error codes).
var (
	// ErrOutOfOrderSequence: a sequence gap, or a batch too old to be among the
	// five remembered (OUT_OF_ORDER_SEQUENCE_NUMBER).
	ErrOutOfOrderSequence = errors.New("partition: out of order sequence number")
	// ErrInvalidProducerEpoch: the batch's epoch is older than the producer's
	// current one: a zombie (INVALID_PRODUCER_EPOCH).
	ErrInvalidProducerEpoch = errors.New("partition: producer epoch is older than the current one")
)

// batchesToRetain is Kafka's NUM_BATCHES_TO_RETAIN: clients keep at most five
// requests in flight per partition, so five remembered batches catch any retry.
const batchesToRetain = 5

// batchMeta is what is remembered of one appended batch.
type batchMeta struct {
	FirstSeq, LastSeq       int32
	FirstOffset, LastOffset int64
}

// producerEntry is one producer's state on one partition.
type producerEntry struct {
	Epoch   int16
	Batches []batchMeta // oldest first, at most batchesToRetain
	// LastTime is the wall-clock milliseconds of the producer's last write
	// (the recovery time when rebuilt from the log); it drives expiry after
	// producer.id.expiration.ms.
	LastTime int64
	// TxnFirst is the first offset of the producer's ongoing transaction on
	// this partition, or -1 when none is open.
	TxnFirst int64
}

// lastSeqOf returns the sequence of a batch's last record; sequences wrap from
// MaxInt32 to 0 as in Kafka.
func lastSeqOf(firstSeq, lastOffsetDelta int32) int32 {
	return int32((int64(firstSeq) + int64(lastOffsetDelta)) % (int64(math.MaxInt32) + 1))
}

// nextSeq is the sequence that must follow seq.
func nextSeq(seq int32) int32 {
	if seq == math.MaxInt32 {
		return 0
	}
	return seq + 1
}

// producers is a partition's producer table; the partition's append lock
// guards it.
type producers map[int64]*producerEntry

// check decides what to do with a batch from producer pid. It returns the
// remembered batch if this is a duplicate, nil to append it, or an error.
// expired reports whether an entry is too old to trust.
func (ps producers) check(pid int64, epoch int16, firstSeq, lastSeq int32, expired func(*producerEntry) bool) (*batchMeta, error) {
	e := ps[pid]
	if e == nil || expired(e) {
		// KIP-360: an unknown producer (new, or expired) is accepted at any
		// sequence; UNKNOWN_PRODUCER_ID is no longer sent.
		return nil, nil
	}
	if epoch < e.Epoch {
		return nil, fmt.Errorf("%w: batch epoch %d, current %d", ErrInvalidProducerEpoch, epoch, e.Epoch)
	}
	if epoch > e.Epoch {
		// A bumped epoch restarts the sequence at 0.
		if firstSeq != 0 {
			return nil, fmt.Errorf("%w: first batch of new epoch %d starts at sequence %d, not 0", ErrOutOfOrderSequence, epoch, firstSeq)
		}
		return nil, nil
	}
	for i := range e.Batches {
		if b := &e.Batches[i]; b.FirstSeq == firstSeq && b.LastSeq == lastSeq {
			return b, nil
		}
	}
	if len(e.Batches) == 0 {
		// Only a transaction marker was seen at this epoch (the coordinator
		// bumped it); the producer's next batch restarts its sequence.
		return nil, nil
	}
	last := e.Batches[len(e.Batches)-1].LastSeq
	if firstSeq != nextSeq(last) {
		return nil, fmt.Errorf("%w: expected sequence %d, got %d..%d", ErrOutOfOrderSequence, nextSeq(last), firstSeq, lastSeq)
	}
	return nil, nil
}

// update records an appended batch (also used when replaying the log).
func (ps producers) update(pid int64, epoch int16, b batchMeta, now int64) {
	e := ps.entry(pid, epoch)
	if len(e.Batches) == batchesToRetain {
		copy(e.Batches, e.Batches[1:])
		e.Batches = e.Batches[:batchesToRetain-1]
	}
	e.Batches = append(e.Batches, b)
	e.LastTime = max(e.LastTime, now)
}

// entry returns pid's entry, creating it, and moves it to epoch: a new epoch
// restarts sequences, so the remembered batches of the old one are dropped.
func (ps producers) entry(pid int64, epoch int16) *producerEntry {
	e := ps[pid]
	if e == nil {
		e = &producerEntry{Epoch: epoch, TxnFirst: -1}
		ps[pid] = e
	}
	if epoch != e.Epoch {
		e.Epoch, e.Batches = epoch, e.Batches[:0]
	}
	return e
}

// AbortedTxn is one aborted transaction on a partition: the producer, the
// offset of its first batch here and the offset of its ABORT marker. A
// read_committed consumer skips that producer's transactional batches between
// the two.
type AbortedTxn struct{ ProducerID, FirstOffset, LastOffset int64 }

// Snapshot file layout (big-endian), written atomically next to the log:
//
//	magic "IDPS" | version u8 | offset i64 | count u32 |
//	count × (pid i64 | epoch i16 | lastTime i64 | txnFirst i64 | n u8 | n × (firstSeq i32 | lastSeq i32 | firstOffset i64 | lastOffset i64)) |
//	aborted u32 | aborted × (pid i64 | firstOffset i64 | lastOffset i64) |
//	crc32c u32 of everything before it
//
// offset is the log end offset the state covers: recovery replays batches from
// there.
const (
	snapMagic   = "IDPS"
	snapVersion = 2
	snapHeader  = 4 + 1 + 8 + 4
	snapEntry   = 8 + 2 + 8 + 8 + 1
	snapBatch   = 4 + 4 + 8 + 8
	snapAborted = 8 + 8 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (ps producers) encode(offset int64, aborted []AbortedTxn) []byte {
	pids := make([]int64, 0, len(ps))
	for pid := range ps {
		pids = append(pids, pid)
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	be := binary.BigEndian
	b := append([]byte(snapMagic), snapVersion)
	b = be.AppendUint64(b, uint64(offset))
	b = be.AppendUint32(b, uint32(len(pids)))
	for _, pid := range pids {
		e := ps[pid]
		b = be.AppendUint64(b, uint64(pid))
		b = be.AppendUint16(b, uint16(e.Epoch))
		b = be.AppendUint64(b, uint64(e.LastTime))
		b = be.AppendUint64(b, uint64(e.TxnFirst))
		b = append(b, byte(len(e.Batches)))
		for _, m := range e.Batches {
			b = be.AppendUint32(b, uint32(m.FirstSeq))
			b = be.AppendUint32(b, uint32(m.LastSeq))
			b = be.AppendUint64(b, uint64(m.FirstOffset))
			b = be.AppendUint64(b, uint64(m.LastOffset))
		}
	}
	b = be.AppendUint32(b, uint32(len(aborted)))
	for _, a := range aborted {
		b = be.AppendUint64(b, uint64(a.ProducerID))
		b = be.AppendUint64(b, uint64(a.FirstOffset))
		b = be.AppendUint64(b, uint64(a.LastOffset))
	}
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeSnapshot parses a snapshot, checking every length against the bytes
// present and the CRC before trusting anything.
func decodeSnapshot(b []byte) (producers, []AbortedTxn, int64, error) {
	bad := func(what string) (producers, []AbortedTxn, int64, error) {
		return nil, nil, 0, fmt.Errorf("producer snapshot: %s", what)
	}
	if len(b) < snapHeader+4 {
		return bad("too short")
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return bad("checksum mismatch")
	}
	if string(body[:4]) != snapMagic || body[4] != snapVersion {
		return bad("unknown format")
	}
	be := binary.BigEndian
	offset := int64(be.Uint64(body[5:]))
	count := int(be.Uint32(body[13:]))
	body = body[snapHeader:]
	if count > len(body)/snapEntry {
		return bad("entry count exceeds the file")
	}
	ps := make(producers, count)
	prev := int64(math.MinInt64)
	for i := range count {
		if len(body) < snapEntry {
			return bad("truncated entry")
		}
		pid := int64(be.Uint64(body))
		if i > 0 && pid <= prev {
			return bad("producers out of order")
		}
		prev = pid
		e := &producerEntry{Epoch: int16(be.Uint16(body[8:])), LastTime: int64(be.Uint64(body[10:])), TxnFirst: int64(be.Uint64(body[18:]))}
		n := int(body[26])
		body = body[snapEntry:]
		if n > batchesToRetain || len(body) < n*snapBatch {
			return bad("bad batch count")
		}
		for range n {
			e.Batches = append(e.Batches, batchMeta{
				FirstSeq: int32(be.Uint32(body)), LastSeq: int32(be.Uint32(body[4:])),
				FirstOffset: int64(be.Uint64(body[8:])), LastOffset: int64(be.Uint64(body[16:])),
			})
			body = body[snapBatch:]
		}
		ps[pid] = e
	}
	if len(body) < 4 {
		return bad("truncated aborted list")
	}
	na := int(be.Uint32(body))
	body = body[4:]
	if na > len(body)/snapAborted || len(body) != na*snapAborted {
		return bad("aborted list does not match the file")
	}
	var aborted []AbortedTxn
	for range na {
		aborted = append(aborted, AbortedTxn{ProducerID: int64(be.Uint64(body)), FirstOffset: int64(be.Uint64(body[8:])), LastOffset: int64(be.Uint64(body[16:]))})
		body = body[snapAborted:]
	}
	return ps, aborted, offset, nil
}
