package share

import (
	"errors"
	"math"
	"testing"

	"github.com/idem-dev/idem/internal/statelog"
)

// FuzzReplayRecord feeds arbitrary keys and values to replay: a damaged or
// hostile share log must give an error or be skipped, never a panic, and
// never make replay allocate a window past maxWindow records.
func FuzzReplayRecord(f *testing.F) {
	tp := topicPartition{id: [16]byte{1}, partition: 2}
	for _, r := range []statelog.Record{
		configRecord(ResourceGroup, "g", map[string]string{"share.delivery.count.limit": "3"}),
		groupRecord("g", 4, false),
		stateRecord("g", tp, true, 10, []run{{first: 10, last: 12, state: stAcknowledged, count: 1}}, false),
		stateRecord("g", tp, false, 11, []run{{first: 13, last: 13, state: stAvailable, count: 2, availAt: 5}}, false),
		producerRecord(7, 0),
		seqRecord(tp, 9),
		memberRecord("g", &member{id: "m", epoch: 3, prevEpoch: 2, clientID: "c", subscribed: []string{"t"}}, false),
		(&dlqEntry{key: dlqEntryKey{"g", tp, 3}, status: dlqAssigned, srcTopic: "t", dlqTopic: "dlq.t"}).record(),
	} {
		f.Add(r.Key, r.Value)
	}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		c := &Coordinator{groups: map[string]*group{}, configs: map[resourceKey]map[string]string{}}
		c.dlq.init()
		c.mu.Lock()
		defer c.mu.Unlock()
		_ = c.applyLocked(statelog.Record{Key: key, Value: value})
		for _, g := range c.groups {
			for _, sp := range g.sps {
				if len(sp.recs) > maxWindow {
					t.Fatalf("window of %d records from one record", len(sp.recs))
				}
			}
		}
	})
}

// TestReplayRefusesAStateRecordBelowOffsetZero is the fuzzer's find made a
// specification: a state record whose start offset is negative is corrupt.
// With a start of -2^63, last-start overflowed, every run passed the window
// bound, and replay grew the window record by record until memory ran out.
func TestReplayRefusesAStateRecordBelowOffsetZero(t *testing.T) {
	tp := topicPartition{id: [16]byte{1}, partition: 2}
	for _, spso := range []int64{-1, math.MinInt64} {
		c := &Coordinator{groups: map[string]*group{}, configs: map[resourceKey]map[string]string{}}
		c.dlq.init()
		rec := stateRecord("g", tp, false, spso, []run{{first: 0, last: 3, state: stAcknowledged, count: 1}}, false)
		c.mu.Lock()
		err := c.applyLocked(rec)
		c.mu.Unlock()
		if !errors.Is(err, errCorruptRecord) {
			t.Errorf("start %d: err %v, want a corrupt-record error", spso, err)
		}
		if g := c.groups["g"]; g != nil && g.sps[tp] != nil {
			t.Errorf("start %d: replay kept a window of %d records", spso, len(g.sps[tp].recs))
		}
	}
}
