package txn

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/statelog"
)

// Records written before transaction version 2 (no NextProducerID, no
// ClientTransactionVersion tag, and no PreviousProducerID when there was no
// rotation) read as version 1 transactions with nothing to hand over; and a
// version 2 record is readable by a decoder that knows none of the new tags
// (an idem that predates them, or any kmsg reader), with the same producer,
// epoch and state.
func TestRecordsAcrossTransactionVersions(t *testing.T) {
	old := kmsg.NewTxnMetadataValue()
	old.Version = valueVersion
	old.ProducerID, old.ProducerEpoch, old.State = 1000, 4, kmsg.TransactionState(CompleteCommit)
	old.TimeoutMillis, old.StartTimestamp = 60000, -1
	key := kmsg.TxnMetadataKey{Version: keyVersion, TransactionalID: "a"}
	_, s, err := decodeRecord(statelog.Record{Key: key.AppendTo(nil), Value: old.AppendTo(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if s.tv2 || s.nextPID != -1 || s.lastPID != -1 || s.pid != 1000 || s.epoch != 4 {
		t.Fatalf("an old record read as %+v; want version 1, no next or last producer id", s)
	}

	s2 := txnState{pid: 1001, lastPID: 1000, nextPID: 1002, tv2: true, epoch: 32767, lastEpoch: 32766,
		timeout: time.Minute, state: PrepareCommit, lastUpdate: time.UnixMilli(1_700_000_000_000)}
	r := encodeRecord("a", &s2)
	var v kmsg.TxnMetadataValue // as an older reader: no defaults, no interest in the tags
	if err := v.ReadFrom(r.Value); err != nil {
		t.Fatalf("an older reader cannot read a version 2 record: %v", err)
	}
	if v.ProducerID != 1001 || v.ProducerEpoch != 32767 || v.State != kmsg.TransactionState(PrepareCommit) {
		t.Fatalf("an older reader reads %+v", v)
	}
	_, back, err := decodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	if !back.tv2 || back.nextPID != 1002 || back.lastPID != 1000 {
		t.Fatalf("round trip lost the version 2 fields: %+v", back)
	}
}
