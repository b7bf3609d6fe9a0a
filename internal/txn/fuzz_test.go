package txn

import (
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/statelog"
)

// FuzzTransactionLog feeds arbitrary bytes to the transaction-log decoders
// that replay trusts after a crash: they must return an error, never panic,
// and whatever decodes must encode back to a record that decodes the same.
func FuzzTransactionLog(f *testing.F) {
	s := txnState{
		pid: 7, lastPID: 3, nextPID: 9, tv2: true, epoch: 2, lastEpoch: 1, timeout: time.Minute, state: Ongoing,
		partitions: map[TopicPartition]struct{}{{"t", 0}: {}, {"t", 3}: {}, {"u", 1}: {}},
		groups:     map[string]struct{}{"g": {}},
		start:      time.UnixMilli(1_700_000_000_000), lastUpdate: time.UnixMilli(1_700_000_000_500),
	}
	r := encodeRecord("id", &s)
	f.Add(r.Key, r.Value, logstore.EncodeBatch([]statelog.Record{r}, 0, 0, -1, -1))
	tomb := encodeRecord("id", nil)
	f.Add(tomb.Key, []byte{}, logstore.EncodeBatch([]statelog.Record{tomb, r}, 0, 0, -1, -1))
	f.Fuzz(func(t *testing.T, key, value, batch []byte) {
		_ = logstore.DecodeRecords(batch, func(logstore.BatchHeader, int64, logstore.Record) error { return nil })
		id, st, err := decodeRecord(statelog.Record{Key: key, Value: value})
		if err != nil || st == nil {
			return
		}
		again := encodeRecord(id, st)
		id2, st2, err := decodeRecord(again)
		if err != nil || id2 != id {
			t.Fatalf("re-decoding %q: %v (id %q)", id, err, id2)
		}
		if a, b := encodeRecord(id2, st2), again; string(a.Value) != string(b.Value) {
			t.Fatalf("not stable across a round trip:\n %x\n %x", a.Value, b.Value)
		}
	})
}
