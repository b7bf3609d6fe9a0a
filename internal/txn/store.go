package txn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/logstore"
)

// The transaction log holds Kafka's __transaction_state records in v2 record
// batches: key TxnMetadataKey v0 (the transactional id), value
// TxnMetadataValue v1; a nil value is a tombstone (the id expired). Two tags
// carry what Kafka keeps elsewhere or only in memory:
//
//	tagGroups     the consumer groups of the transaction (Kafka adds their
//	              __consumer_offsets partition to the partition list instead)
//	tagLastEpoch  the epoch before the last bump, so a KIP-360 retry of
//	              InitProducerId is recognised after a restart too
//
// PreviousProducerID holds the producer id before the last rotation.
const (
	keyVersion   = 0
	valueVersion = 1

	tagGroups    = 10000
	tagLastEpoch = 10001

	// maxRecordsPerBatch bounds snapshot batches.
	maxRecordsPerBatch = 500
)

type logRecord struct{ key, value []byte }

func encodeRecord(id string, s *txnState) logRecord {
	k := kmsg.TxnMetadataKey{Version: keyVersion, TransactionalID: id}
	if s == nil {
		return logRecord{key: k.AppendTo(nil)}
	}
	v := kmsg.NewTxnMetadataValue()
	v.Version = valueVersion
	v.ProducerID = s.pid
	v.ProducerEpoch = s.epoch
	v.TimeoutMillis = int32(s.timeout / time.Millisecond)
	v.State = kmsg.TransactionState(s.state)
	for _, tp := range s.sortedPartitions() {
		if n := len(v.Topics); n > 0 && v.Topics[n-1].Topic == tp.Topic {
			v.Topics[n-1].Partitions = append(v.Topics[n-1].Partitions, tp.Partition)
			continue
		}
		v.Topics = append(v.Topics, kmsg.TxnMetadataValueTopic{Topic: tp.Topic, Partitions: []int32{tp.Partition}})
	}
	v.LastUpdateTimestamp = s.lastUpdate.UnixMilli()
	v.StartTimestamp = -1
	if !s.start.IsZero() {
		v.StartTimestamp = s.start.UnixMilli()
	}
	v.PreviousProducerID = s.lastPID
	if gs := s.sortedGroups(); len(gs) > 0 {
		b := binary.AppendUvarint(nil, uint64(len(gs)))
		for _, g := range gs {
			b = binary.AppendUvarint(b, uint64(len(g)))
			b = append(b, g...)
		}
		v.UnknownTags.Set(tagGroups, b)
	}
	v.UnknownTags.Set(tagLastEpoch, binary.BigEndian.AppendUint16(nil, uint16(s.lastEpoch)))
	return logRecord{key: k.AppendTo(nil), value: v.AppendTo(nil)}
}

// errUnknownRecord marks records skipped on replay (a newer idem's keys).
var errUnknownRecord = errors.New("txn: unknown transaction-log record")

// decodeRecord parses one record; s is nil for a tombstone.
func decodeRecord(r logRecord) (id string, s *txnState, err error) {
	if len(r.key) < 2 || int16(binary.BigEndian.Uint16(r.key)) != keyVersion {
		return "", nil, errUnknownRecord
	}
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(r.key); err != nil {
		return "", nil, err
	}
	if r.value == nil {
		return k.TransactionalID, nil, nil
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(r.value); err != nil {
		return "", nil, err
	}
	st := &txnState{
		pid:        v.ProducerID,
		lastPID:    v.PreviousProducerID,
		epoch:      v.ProducerEpoch,
		lastEpoch:  noEpoch,
		timeout:    time.Duration(v.TimeoutMillis) * time.Millisecond,
		state:      State(v.State),
		partitions: map[TopicPartition]struct{}{},
		groups:     map[string]struct{}{},
		lastUpdate: time.UnixMilli(v.LastUpdateTimestamp),
	}
	if v.StartTimestamp >= 0 {
		st.start = time.UnixMilli(v.StartTimestamp)
	}
	for _, t := range v.Topics {
		for _, p := range t.Partitions {
			st.partitions[TopicPartition{t.Topic, p}] = struct{}{}
		}
	}
	var tagErr error
	v.UnknownTags.Each(func(tag uint32, b []byte) {
		switch tag {
		case tagGroups:
			n, m := binary.Uvarint(b)
			if m <= 0 {
				tagErr = fmt.Errorf("txn: bad groups tag of %q", k.TransactionalID)
				return
			}
			b = b[m:]
			for range n {
				l, m := binary.Uvarint(b)
				if m <= 0 || uint64(len(b)-m) < l {
					tagErr = fmt.Errorf("txn: bad groups tag of %q", k.TransactionalID)
					return
				}
				st.groups[string(b[m:m+int(l)])] = struct{}{}
				b = b[m+int(l):]
			}
		case tagLastEpoch:
			if len(b) == 2 {
				st.lastEpoch = int16(binary.BigEndian.Uint16(b))
			}
		}
	})
	if tagErr != nil {
		return "", nil, tagErr
	}
	return k.TransactionalID, st, nil
}

// encodeBatch builds one v2 record batch holding recs, CRC included.
func encodeBatch(recs []logRecord, now time.Time) []byte {
	out := make([]logstore.Record, len(recs))
	for i, r := range recs {
		out[i] = logstore.Record{Key: r.key, Value: r.value}
	}
	return logstore.EncodeBatch(out, now.UnixMilli(), 0, -1, -1)
}

// decodeBatch calls fn for every record of one batch read back from the log.
func decodeBatch(b []byte, fn func(logRecord) error) error {
	return logstore.DecodeRecords(b, func(_ logstore.BatchHeader, _ int64, r logstore.Record) error {
		return fn(logRecord{key: r.Key, value: r.Value})
	})
}

// replay rebuilds memory from the whole log. It runs before the coordinator
// is shared.
func (c *Coordinator) replay() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	skipped := 0
	err := c.log.Scan(c.log.StartOffset(), func(_ logstore.BatchHeader, b []byte) error {
		return decodeBatch(b, func(r logRecord) error {
			c.logRecords++
			id, s, err := decodeRecord(r)
			if errors.Is(err, errUnknownRecord) {
				skipped++
				return nil
			}
			if err != nil {
				return err
			}
			c.installLocked(id, s)
			return nil
		})
	})
	if skipped > 0 {
		c.logger.Warn("skipped unknown records in the transaction log", "count", skipped)
	}
	return err
}

// installLocked makes s the state of id (nil or Dead removes it) and keeps
// the producer-id index in step.
func (c *Coordinator) installLocked(id string, s *txnState) {
	t := c.txns[id]
	if t != nil {
		c.unindexLocked(t)
	}
	if s == nil || s.state == Dead {
		delete(c.txns, id)
		return
	}
	if t == nil {
		t = &txnMeta{id: id}
		c.txns[id] = t
	}
	t.s = *s
	c.byPID[t.s.pid] = t
	if t.s.lastPID >= 0 && t.s.lastPID != t.s.pid {
		c.byPID[t.s.lastPID] = t
	}
}

func (c *Coordinator) unindexLocked(t *txnMeta) {
	for _, pid := range []int64{t.s.pid, t.s.lastPID} {
		if c.byPID[pid] == t {
			delete(c.byPID, pid)
		}
	}
}

// writeLocked appends the record for id's new state s (nil: tombstone) and,
// only if that worked, installs s in memory. It returns the log offset to
// wait for before the change may be acknowledged.
func (c *Coordinator) writeLocked(id string, s *txnState) (int64, error) {
	if s != nil && s.state == Dead {
		s = nil
	}
	info, err := c.log.Append(encodeBatch([]logRecord{encodeRecord(id, s)}, c.now()))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	c.installLocked(id, s)
	c.logRecords++
	if c.logRecords > c.compactThresholdLocked() {
		c.kick()
	}
	return info.LastOffset + 1, nil
}

// awaitDurable waits until the record below end is fsynced, then clears
// t's busy mark. It does not take the request's context: the record is in
// the log either way, and memory already says so.
func (c *Coordinator) awaitDurable(t *txnMeta, end int64) error {
	err := c.log.WaitDurable(context.Background(), end)
	c.mu.Lock()
	t.busy = false
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}

// compactThresholdLocked is how many records the log may hold before it is
// rewritten as a snapshot: twice the live records, and at least
// Config.CompactRecords.
func (c *Coordinator) compactThresholdLocked() int {
	return max(2*len(c.txns), c.cfg.CompactRecords)
}

// compact rewrites the live state as a snapshot at the log end, waits until
// it is durable and deletes the log below it. A crash at any point leaves a
// log whose in-order replay gives the same state: the snapshot repeats what
// the records before it say (memory equals the replay of the log).
func (c *Coordinator) compact() error {
	c.mu.Lock()
	if c.closed || c.logRecords <= c.compactThresholdLocked() {
		c.mu.Unlock()
		return nil
	}
	start := c.log.EndOffset()
	ids := make([]string, 0, len(c.txns))
	for id := range c.txns {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var end int64
	n := 0
	for chunk := range slices.Chunk(ids, maxRecordsPerBatch) {
		recs := make([]logRecord, 0, len(chunk))
		for _, id := range chunk {
			s := c.txns[id].s
			recs = append(recs, encodeRecord(id, &s))
		}
		info, err := c.log.Append(encodeBatch(recs, c.now()))
		if err != nil {
			c.mu.Unlock()
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
		end, n = info.LastOffset+1, n+len(recs)
	}
	c.logRecords = n
	c.mu.Unlock()
	if n > 0 {
		if err := c.log.WaitDurable(context.Background(), end); err != nil {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
	}
	if err := c.log.DeleteBefore(start); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	c.logger.Debug("compacted the transaction log", "snapshot_records", n, "start", start)
	return nil
}
