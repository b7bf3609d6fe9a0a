package group

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
)

// FuzzReplayRecords feeds arbitrary record bytes, wrapped in a batch with a
// valid CRC (so they get past logstore's checks, as a bug in an older writer
// would), through the replay path: decoding and applying must never panic;
// bad input is an error or a skipped record.
func FuzzReplayRecords(f *testing.F) {
	now := time.Unix(1700000000, 0)
	g := &group{id: "g", state: Stable, protocolType: "consumer", protocol: "range", leader: "m",
		members: map[string]*member{"m": {id: "m", protocols: []Protocol{{"range", []byte{1}}}, assignment: []byte{2}}}}
	seeds := [][]logRecord{
		{offsetRecord("g", TopicPartition{"t", 1}, Offset{Offset: 5, LeaderEpoch: 2, Metadata: "x", CommitTime: now})},
		{offsetTombstone("g", TopicPartition{"t", 1}), groupTombstone("g")},
		{groupRecordLocked(g)},
	}
	for _, recs := range seeds {
		b := encodeBatch(recs, now)
		f.Add(b[logstore.BatchHeaderSize:], int32(len(recs)), uint8(0))
		f.Add(b[logstore.BatchHeaderSize:], int32(len(recs)), uint8(attrTransactional))
	}
	f.Add([]byte{}, int32(0), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, n int32, attrs uint8) {
		if n < 0 || n > 64 {
			return
		}
		seed := encodeBatch([]logRecord{{key: []byte{0, 1}}}, now)
		b := append(seed[:logstore.BatchHeaderSize:logstore.BatchHeaderSize], raw...)
		binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
		binary.BigEndian.PutUint32(b[23:], uint32(max(n-1, 0))) // last offset delta
		binary.BigEndian.PutUint32(b[57:], uint32(n))           // record count
		binary.BigEndian.PutUint16(b[21:], uint16(attrs&(attrTransactional|attrControl)))
		logstore.FixCRC(b)
		c := &Coordinator{groups: map[string]*group{}}
		c.cfg.setDefaults()
		c.logger = c.cfg.Logger
		_ = decodeBatch(b, func(h logstore.BatchHeader, pos int64, r logRecord) error {
			_ = c.applyRecordLocked(h, pos, r, now)
			return nil
		})
	})
}
