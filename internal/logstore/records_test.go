package logstore

import (
	"errors"
	"testing"
)

func TestEncodeBatchRoundTripsThroughDecodeRecords(t *testing.T) {
	in := []Record{{Key: []byte("k1"), Value: []byte("v1")}, {Key: []byte("k2")}, {Key: make([]byte, 300), Value: make([]byte, 70000)}}
	b := EncodeBatch(in, 1234, 0x10, 77, 3)
	h, err := ParseBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if !h.IsTransactional() || h.ProducerID != 77 || h.ProducerEpoch != 3 || h.NumRecords != 3 || h.MaxTimestamp != 1234 {
		t.Fatalf("header %+v", h)
	}
	SetBaseOffset(b, 40)
	var got []Record
	var offs []int64
	if err := DecodeRecords(b, func(_ BatchHeader, off int64, r Record) error {
		got, offs = append(got, r), append(offs, off)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[0].Key) != "k1" || string(got[0].Value) != "v1" || got[1].Value != nil || len(got[2].Value) != 70000 {
		t.Fatalf("decoded %d records: %q", len(got), got[:2])
	}
	if offs[0] != 40 || offs[2] != 42 {
		t.Fatalf("offsets %v, want 40..42", offs)
	}
}

func TestDecodeRecordsRejectsARecordCountBeyondTheBytes(t *testing.T) {
	b := EncodeBatch([]Record{{Key: []byte("only")}}, 1, 0, -1, -1)
	b[60]++ // claim two records where one is present
	FixCRC(b)
	err := DecodeRecords(b, func(BatchHeader, int64, Record) error { return nil })
	if !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("err = %v, want ErrInvalidBatch", err)
	}
}
