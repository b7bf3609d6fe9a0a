package logstore

import (
	"encoding/binary"
	"hash/crc32"
	"sort"
)

// What the cleaner does to one batch, following Kafka's LogCleaner and
// MemoryRecords.filterTo (docs/compaction.md has the rules with their
// sources).

// attrDeleteHorizon marks a batch whose base timestamp is its delete
// horizon (KIP-534): tombstones and markers in it may go once it passes.
const (
	attrTimestampType = 0x08
	attrDeleteHorizon = 0x40
)

// AbortedRange is an aborted transaction: the producer, the offset of its
// first batch and the offset of its ABORT marker.
type AbortedRange struct{ ProducerID, FirstOffset, LastOffset int64 }

// txnTracker follows transactions through one cleaning round, in log order
// from the log start, as Kafka's CleanedTransactionMetadata does: it says
// which data batches belong to aborted transactions, and whether a marker
// can go because no batch of its transaction is left. It spans the whole
// round (not one segment group), so a marker whose transaction's batches
// lie in an earlier group is never taken for an empty transaction: a
// replay of the log would then see those batches without their marker.
//
// An aborted transaction ends at its marker's offset, not at the sight of
// the marker: once a clean has removed a marker, the partition may still
// list the transaction, and the producer's later transactions must not be
// taken for part of it.
type txnTracker struct {
	aborted   []AbortedRange // ascending by FirstOffset
	next      int
	open      map[int64]*abortedTxn // producer id → its aborted transaction in progress
	committed map[int64]bool        // producer ids with a batch of a not-aborted transaction seen since its start
}

type abortedTxn struct {
	marker int64 // offset of the ABORT marker
	seen   bool  // a batch of it was seen this round
}

func newTxnTracker(aborted []AbortedRange) *txnTracker {
	a := append([]AbortedRange(nil), aborted...)
	sort.Slice(a, func(i, j int) bool { return a[i].FirstOffset < a[j].FirstOffset })
	return &txnTracker{aborted: a, open: map[int64]*abortedTxn{}, committed: map[int64]bool{}}
}

func (t *txnTracker) consumeUpTo(offset int64) {
	for t.next < len(t.aborted) && t.aborted[t.next].FirstOffset <= offset {
		t.open[t.aborted[t.next].ProducerID] = &abortedTxn{marker: t.aborted[t.next].LastOffset}
		t.next++
	}
}

// onData records a data batch and reports whether it was aborted.
func (t *txnTracker) onData(h BatchHeader) bool {
	t.consumeUpTo(h.LastOffset())
	if !h.IsTransactional() {
		return false
	}
	if a := t.open[h.ProducerID]; a != nil {
		if h.BaseOffset < a.marker {
			a.seen = true
			return true
		}
		delete(t.open, h.ProducerID) // its marker is behind us, gone from the log
	}
	t.committed[h.ProducerID] = true
	return false
}

// onMarker records a control batch and reports whether it may be removed
// (once its delete horizon passes): an ABORT whose transaction has no batch
// left, a COMMIT none of whose batches was seen, a marker already emptied.
func (t *txnTracker) onMarker(h BatchHeader, batch []byte) bool {
	t.consumeUpTo(h.LastOffset())
	if h.NumRecords == 0 {
		return true
	}
	commit, ok := controlType(batch)
	if !ok {
		return false
	}
	if commit {
		seen := t.committed[h.ProducerID]
		delete(t.committed, h.ProducerID)
		return !seen
	}
	a := t.open[h.ProducerID]
	delete(t.open, h.ProducerID)
	return a == nil || !a.seen
}

// controlType reads the type of an uncompressed control batch's first
// record (key: version int16, type int16; 0 abort, 1 commit).
func controlType(batch []byte) (commit, ok bool) {
	if decodeHeader(batch).Compression() != codecNone {
		return false, false
	}
	var typ int = -1
	eachRecord(batch[BatchHeaderSize:], 1, func(r *record) error {
		if r.hasKey && len(r.key) >= 4 {
			typ = int(binary.BigEndian.Uint16(r.key[2:]))
		}
		return errStop
	})
	return typ == 1, typ == 0 || typ == 1
}

// roundState is what one cleaning round knows while it filters batches.
type roundState struct {
	keys            *keyMap
	mapEnd          int64 // offsets below were mapped; batches from here on are copied as they are
	now             int64 // wall-clock milliseconds at the start of the round
	deleteRetention int64 // milliseconds
	txns            *txnTracker
	lastData        map[int64]int64 // live producer → last offset of its last data batch
	markerEpoch     map[int64]int16 // live producer whose last write was a marker → its epoch
	minHorizon      int64           // earliest delete horizon of a batch kept with records; -1 none
	stats           *CleanStats
}

// kept is one record the filter keeps.
type kept struct {
	raw, body  []byte
	tsDelta    int64
	tsDeltaEnd int
	offset     int64
	tombstone  bool
}

// filterBatch decides what becomes of one batch of a group being cleaned:
// it returns the bytes to write (nil to drop it) and whether they differ
// from the batch. isLast marks the group's last batch, which is always
// kept (empty if need be) so that the new segment ends where the old ones
// did. The result may alias batch or the cleaner's buffers until the next
// call.
func (c *Cleaner) filterBatch(h BatchHeader, batch []byte, rs *roundState, isLast bool) ([]byte, bool) {
	if h.BaseOffset >= rs.mapEnd {
		return batch, false
	}
	rs.stats.RecordsRead += int64(h.NumRecords)
	horizon, horizonSet := h.FirstTimestamp, h.Attributes&attrDeleteHorizon != 0
	keepEmpty := isLast
	if h.ProducerID >= 0 {
		if last, ok := rs.lastData[h.ProducerID]; ok {
			// The batch with the producer's last sequence: without it a
			// replay of the log would forget the producer.
			keepEmpty = keepEmpty || h.LastOffset() == last
		} else if epoch, ok := rs.markerEpoch[h.ProducerID]; ok && h.IsControl() && h.ProducerEpoch == epoch {
			keepEmpty = true // the marker that carries the producer's epoch
		}
	}
	empty := func() ([]byte, bool) {
		if !keepEmpty {
			return nil, true
		}
		if h.NumRecords == 0 {
			return batch, false
		}
		return c.emptyBatch(h, batch), true
	}
	keep := func() ([]byte, bool) {
		rs.stats.RecordsKept += int64(h.NumRecords)
		rs.noteHorizon(h)
		return batch, false
	}

	if h.IsControl() {
		removable := rs.txns.onMarker(h, batch)
		switch {
		case removable && horizonSet && horizon <= rs.now:
			return empty()
		case removable && !horizonSet && h.NumRecords > 0:
			// First seen with its transaction gone: keep it until the
			// delete horizon, so consumers that are behind still see it.
			out, ok := c.rebuild(h, batch, rs, nil, rs.now+rs.deleteRetention)
			if !ok {
				return keep()
			}
			return out, true
		}
		return keep()
	}

	if rs.txns.onData(h) || h.NumRecords == 0 {
		return empty() // an aborted transaction's batch, or one already emptied
	}
	area, ok := c.records(h, batch)
	if !ok {
		return keep()
	}
	// The records with a key (Kafka's cleaner drops the others), then
	// their keys looked up together (keyMap.warm).
	c.kept, c.hashes = c.kept[:0], c.hashes[:0]
	err := eachRecord(area, h.NumRecords, func(r *record) error {
		if r.hasKey {
			c.kept = append(c.kept, kept{raw: r.raw, body: r.body, tsDelta: r.tsDelta, tsDeltaEnd: r.tsDeltaEnd,
				offset: h.BaseOffset + int64(r.offsetDelta), tombstone: !r.hasValue})
			c.hashes = append(c.hashes, rs.keys.hash(r.key))
		}
		return nil
	})
	if err != nil {
		rs.stats.Unreadable++
		return keep() // records the cleaner cannot read are left as they are
	}
	rs.keys.warm(c.hashes)
	tombstones := false
	n := 0
	for i, k := range c.kept {
		if rs.keys.getHash(c.hashes[i]) > k.offset {
			continue // a later record has this key
		}
		if k.tombstone {
			if horizonSet && horizon <= rs.now {
				continue // a tombstone past its delete horizon
			}
			tombstones = true
		}
		c.kept[n] = k
		n++
	}
	c.kept = c.kept[:n]
	if len(c.kept) == 0 {
		return empty()
	}
	newHorizon := int64(-1)
	if tombstones && !horizonSet {
		newHorizon = rs.now + rs.deleteRetention
	}
	if len(c.kept) == int(h.NumRecords) && newHorizon < 0 {
		return keep()
	}
	out, ok := c.rebuild(h, batch, rs, c.kept, newHorizon)
	if !ok {
		return keep()
	}
	return out, true
}

// noteHorizon records the delete horizon of a batch kept with records, if
// it is still to come: what a passed horizon allowed this round removed.
func (rs *roundState) noteHorizon(h BatchHeader) {
	if h.Attributes&attrDeleteHorizon != 0 && h.NumRecords > 0 && h.FirstTimestamp > rs.now && (rs.minHorizon < 0 || h.FirstTimestamp < rs.minHorizon) {
		rs.minHorizon = h.FirstTimestamp
	}
}

// records returns a batch's records area, decompressed (ok false when it
// cannot be read: a codec error or a bomb beyond MaxDecompressedBatch).
func (c *Cleaner) records(h BatchHeader, batch []byte) ([]byte, bool) {
	area := batch[BatchHeaderSize:]
	if h.Compression() == codecNone {
		return area, true
	}
	var err error
	c.recBuf, err = c.codecs.decompress(c.recBuf, h.Compression(), area, MaxDecompressedBatch)
	if err != nil {
		return nil, false
	}
	return c.recBuf, true
}

// rebuild writes batch anew with only the records keep (all of them when
// keep is nil: a marker gaining its delete horizon). It keeps the base
// offset, last offset delta, producer id, epoch, base sequence and codec;
// with horizon >= 0 it sets the delete horizon and rebases the records'
// timestamp deltas on it, so their timestamps stay what they were.
func (c *Cleaner) rebuild(h BatchHeader, batch []byte, rs *roundState, keep []kept, horizon int64) ([]byte, bool) {
	if keep == nil {
		area, ok := c.records(h, batch)
		if !ok {
			return nil, false
		}
		if eachRecord(area, h.NumRecords, func(r *record) error {
			keep = append(keep, kept{raw: r.raw, body: r.body, tsDelta: r.tsDelta, tsDeltaEnd: r.tsDeltaEnd})
			return nil
		}) != nil {
			return nil, false
		}
	}
	base := h.FirstTimestamp
	if horizon >= 0 {
		base = horizon
	}
	maxTS := h.MaxTimestamp
	if h.Attributes&attrTimestampType == 0 {
		maxTS = -1
		for _, k := range keep {
			maxTS = max(maxTS, h.FirstTimestamp+k.tsDelta)
		}
	}
	c.plain = c.plain[:0]
	for i := range keep {
		if horizon >= 0 {
			r := record{body: keep[i].body, tsDeltaEnd: keep[i].tsDeltaEnd}
			c.plain = appendRebased(c.plain, &r, h.FirstTimestamp+keep[i].tsDelta-horizon)
		} else {
			c.plain = append(c.plain, keep[i].raw...)
		}
	}
	out := append(c.outBuf[:0], batch[:BatchHeaderSize]...)
	var err error
	out, err = c.codecs.compress(out, h.Compression(), c.plain, h.Compression() == codecSnappy && isXerial(batch[BatchHeaderSize:]))
	if err != nil {
		return nil, false
	}
	attrs := uint16(h.Attributes)
	if horizon >= 0 {
		attrs |= attrDeleteHorizon
	}
	be := binary.BigEndian
	be.PutUint32(out[8:], uint32(len(out)-lengthPrefix))
	be.PutUint16(out[21:], attrs)
	be.PutUint64(out[27:], uint64(base))
	be.PutUint64(out[35:], uint64(maxTS))
	be.PutUint32(out[57:], uint32(len(keep)))
	be.PutUint32(out[17:], crc32.Checksum(out[crcStart:], castagnoli))
	c.outBuf = out
	rs.stats.RecordsKept += int64(len(keep))
	rs.noteHorizon(decodeHeader(out))
	return out, true
}

// emptyBatch is batch with no records, kept for its offsets and producer
// fields (Kafka's RETAIN_EMPTY): no codec, no delete horizon, both
// timestamps its max timestamp.
func (c *Cleaner) emptyBatch(h BatchHeader, batch []byte) []byte {
	out := append(c.outBuf[:0], batch[:BatchHeaderSize]...)
	be := binary.BigEndian
	be.PutUint32(out[8:], uint32(BatchHeaderSize-lengthPrefix))
	be.PutUint16(out[21:], uint16(h.Attributes)&(attrTimestampType|attrTransactional|attrControl))
	be.PutUint64(out[27:], uint64(h.MaxTimestamp))
	be.PutUint32(out[57:], 0)
	be.PutUint32(out[17:], crc32.Checksum(out[crcStart:], castagnoli))
	c.outBuf = out
	return out
}
