package group

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/statelog"
)

// The batch attributes Kafka uses for transactional and control batches.
const (
	attrTransactional = 0x10
	attrControl       = 0x20
)

// FuzzReplayRecords feeds arbitrary record bytes, wrapped in a batch with a
// valid CRC (so they get past logstore's checks, as a bug in an older writer
// would), through the replay path: decoding and applying must never panic;
// bad input is an error or a skipped record.
func FuzzReplayRecords(f *testing.F) {
	now := time.Unix(1700000000, 0)
	g := &group{id: "g", state: Stable, protocolType: "consumer", protocol: "range", leader: "m",
		members: map[string]*member{"m": {id: "m", protocols: []Protocol{{"range", []byte{1}}}, assignment: []byte{2}}}}
	seeds := [][]statelog.Record{
		{offsetRecord("g", TopicPartition{"t", 1}, Offset{Offset: 5, LeaderEpoch: 2, Metadata: "x", CommitTime: now})},
		{offsetTombstone("g", TopicPartition{"t", 1}), groupTombstone("g")},
		{groupRecordLocked(g)},
	}
	for _, recs := range seeds {
		b := logstore.EncodeBatch(recs, now.UnixMilli(), 0, -1, -1)
		f.Add(b[logstore.BatchHeaderSize:], int32(len(recs)), uint8(0))
		f.Add(b[logstore.BatchHeaderSize:], int32(len(recs)), uint8(attrTransactional))
	}
	f.Add([]byte{}, int32(0), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, n int32, attrs uint8) {
		if n < 0 || n > 64 {
			return
		}
		seed := logstore.EncodeBatch([]statelog.Record{{Key: []byte{0, 1}}}, now.UnixMilli(), 0, -1, -1)
		b := append(seed[:logstore.BatchHeaderSize:logstore.BatchHeaderSize], raw...)
		binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
		binary.BigEndian.PutUint32(b[23:], uint32(max(n-1, 0))) // last offset delta
		binary.BigEndian.PutUint32(b[57:], uint32(n))           // record count
		binary.BigEndian.PutUint16(b[21:], uint16(attrs&(attrTransactional|attrControl)))
		logstore.FixCRC(b)
		c := &Coordinator{groups: map[string]*group{}, cfg: DefaultConfig()}
		c.logger = c.cfg.Logger
		_ = logstore.DecodeRecords(b, func(h logstore.BatchHeader, pos int64, r logstore.Record) error {
			kind := statelog.Batch{Transactional: h.IsTransactional(), Control: h.IsControl(), ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch}
			_ = c.applyRecordLocked(kind, pos, r, now)
			return nil
		})
	})
}
