package logstore

import (
	"context"
	"encoding/binary"
	"testing"
	"time"
)

// testBatch builds a valid v2 batch whose records area is payload. The log
// never parses records, so any payload makes a valid batch for storage tests.
func testBatch(records int32, maxTS int64, payload []byte) []byte {
	b := make([]byte, BatchHeaderSize+len(payload))
	be := binary.BigEndian
	be.PutUint32(b[8:], uint32(len(b)-lengthPrefix))
	b[16] = 2
	be.PutUint32(b[23:], uint32(records-1))
	be.PutUint64(b[27:], uint64(maxTS))
	be.PutUint64(b[35:], uint64(maxTS))
	be.PutUint64(b[43:], ^uint64(0)) // producer id -1
	be.PutUint16(b[51:], 0xffff)
	be.PutUint32(b[53:], 0xffffffff)
	be.PutUint32(b[57:], uint32(records))
	copy(b[BatchHeaderSize:], payload)
	FixCRC(b)
	return b
}

// payloadOf returns the records area of a stored batch.
func payloadOf(batch []byte) string { return string(batch[BatchHeaderSize:]) }

// splitBatches validates and splits a Read result.
func splitBatches(t testing.TB, b []byte) []BatchHeader {
	t.Helper()
	var hs []BatchHeader
	for len(b) > 0 {
		h, n, err := parseBatchPrefix(b)
		if err != nil {
			t.Fatalf("read returned an invalid batch: %v", err)
		}
		hs = append(hs, h)
		b = b[n:]
	}
	return hs
}

// collect returns every batch's payload keyed by base offset, via Scan.
func collect(l *Log) (map[int64]string, []int64, error) {
	m := map[int64]string{}
	var order []int64
	err := l.Scan(l.StartOffset(), func(h BatchHeader, b []byte) error {
		m[h.BaseOffset] = payloadOf(b)
		order = append(order, h.BaseOffset)
		return nil
	})
	return m, order, err
}

func mustOpen(t testing.TB, fsys FS, dir string, cfg Config) *Log {
	t.Helper()
	l, err := Open(fsys, dir, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func mustAppend(t testing.TB, l *Log, b []byte) AppendInfo {
	t.Helper()
	info, err := l.Append(b)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return info
}

func mustAppendDurable(t testing.TB, l *Log, b []byte) AppendInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := l.AppendDurable(ctx, b)
	if err != nil {
		t.Fatalf("AppendDurable: %v", err)
	}
	return info
}
