package txn

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/statelog"
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
// PreviousProducerID holds the producer id before the last rotation,
// NextProducerID the one a prepared transaction version 2 completion rotates
// to, and ClientTransactionVersion (2 for KIP-890 part 2, else 1) how the
// client runs its transactions. Records without them (written before
// transaction version 2) read as version 1 with no rotation pending; records
// with them are readable by code that predates them, which skips the tags.
const (
	keyVersion   = 0
	valueVersion = 1

	tagGroups    = 10000
	tagLastEpoch = 10001
)

func encodeRecord(id string, s *txnState) statelog.Record {
	k := kmsg.TxnMetadataKey{Version: keyVersion, TransactionalID: id}
	if s == nil {
		return statelog.Record{Key: k.AppendTo(nil)}
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
	v.NextProducerID = s.nextPID
	v.ClientTransactionVersion = int16(s.version())
	if gs := s.sortedGroups(); len(gs) > 0 {
		b := binary.AppendUvarint(nil, uint64(len(gs)))
		for _, g := range gs {
			b = binary.AppendUvarint(b, uint64(len(g)))
			b = append(b, g...)
		}
		v.UnknownTags.Set(tagGroups, b)
	}
	v.UnknownTags.Set(tagLastEpoch, binary.BigEndian.AppendUint16(nil, uint16(s.lastEpoch)))
	return statelog.Record{Key: k.AppendTo(nil), Value: v.AppendTo(nil)}
}

// decodeRecord parses one record; s is nil for a tombstone. A key version
// it does not know (a newer idem's) is statelog.ErrUnknownRecord.
func decodeRecord(r statelog.Record) (id string, s *txnState, err error) {
	if len(r.Key) < 2 || int16(binary.BigEndian.Uint16(r.Key)) != keyVersion {
		return "", nil, statelog.ErrUnknownRecord
	}
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(r.Key); err != nil {
		return "", nil, err
	}
	if r.Value == nil {
		return k.TransactionalID, nil, nil
	}
	// Defaults first: ReadFrom leaves absent tags alone, and -1 (none) is
	// what an absent producer-id tag means.
	v := kmsg.NewTxnMetadataValue()
	if err := v.ReadFrom(r.Value); err != nil {
		return "", nil, err
	}
	st := &txnState{
		pid:        v.ProducerID,
		lastPID:    v.PreviousProducerID,
		epoch:      v.ProducerEpoch,
		lastEpoch:  noEpoch,
		nextPID:    v.NextProducerID,
		tv2:        v.ClientTransactionVersion >= 2,
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
