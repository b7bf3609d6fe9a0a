package logstore

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"
)

// kv is one record of a test batch: Value nil is a tombstone, NoKey a
// record without a key.
type kv struct {
	Key, Value []byte
	NoKey      bool
}

func put(k, v string) kv { return kv{Key: []byte(k), Value: []byte(v)} }
func del(k string) kv    { return kv{Key: []byte(k)} }

// batchSpec describes a test batch beyond its records.
type batchSpec struct {
	codec      int8
	ts         int64 // first timestamp; records are ts, ts+1, …
	pid        int64 // -1: none
	epoch      int16
	seq        int32
	txn        bool
	logAppend  bool
	xerialSnap bool
}

func plainSpec(ts int64) batchSpec { return batchSpec{ts: ts, pid: -1, epoch: -1, seq: -1} }

// keyedBatch builds a valid v2 batch of recs, compressed with spec.codec.
func keyedBatch(t testing.TB, spec batchSpec, recs ...kv) []byte {
	t.Helper()
	var area []byte
	for i, r := range recs {
		var body []byte
		body = append(body, 0)
		body = binary.AppendVarint(body, int64(i)) // timestamp delta: ts+i
		body = binary.AppendVarint(body, int64(i)) // offset delta
		if r.NoKey {
			body = binary.AppendVarint(body, -1)
		} else {
			body = binary.AppendVarint(body, int64(len(r.Key)))
			body = append(body, r.Key...)
		}
		if r.Value == nil {
			body = binary.AppendVarint(body, -1)
		} else {
			body = binary.AppendVarint(body, int64(len(r.Value)))
			body = append(body, r.Value...)
		}
		body = binary.AppendVarint(body, 0) // headers
		area = binary.AppendVarint(area, int64(len(body)))
		area = append(area, body...)
	}
	var c codecs
	comp, err := c.compress(nil, spec.codec, area, spec.xerialSnap)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, BatchHeaderSize, BatchHeaderSize+len(comp))
	be := binary.BigEndian
	attrs := uint16(spec.codec)
	if spec.txn {
		attrs |= attrTransactional
	}
	if spec.logAppend {
		attrs |= attrTimestampType
	}
	b[16] = 2
	be.PutUint16(b[21:], attrs)
	be.PutUint32(b[23:], uint32(len(recs)-1))
	be.PutUint64(b[27:], uint64(spec.ts))
	be.PutUint64(b[35:], uint64(spec.ts+int64(len(recs))-1))
	be.PutUint64(b[43:], uint64(spec.pid))
	be.PutUint16(b[51:], uint16(spec.epoch))
	be.PutUint32(b[53:], uint32(spec.seq))
	be.PutUint32(b[57:], uint32(len(recs)))
	b = append(b, comp...)
	be.PutUint32(b[8:], uint32(len(b)-lengthPrefix))
	FixCRC(b)
	return b
}

// markerBatchForTest is a COMMIT or ABORT control batch.
func markerBatchForTest(pid int64, epoch int16, commit bool, ts int64) []byte {
	typ := uint16(0)
	if commit {
		typ = 1
	}
	key := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0), typ)
	val := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, 0), 0)
	b := EncodeBatch([]Record{{Key: key, Value: val}}, ts, attrTransactional|attrControl, pid, epoch)
	return b
}

// storedRecord is a record as read back from the log.
type storedRecord struct {
	Offset    int64
	Key       string
	Value     string
	Tombstone bool
	NoKey     bool
	TS        int64
	Batch     BatchHeader
}

// readBack reads every record of the log through Read (via Scan), checking
// each batch as a consumer would: valid CRC, epoch 0 as served, offsets
// inside the batch, records in offset order.
func readBack(t testing.TB, l *Log) ([]storedRecord, []BatchHeader) {
	t.Helper()
	out, batches, err := readBackErr(l)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	return out, batches
}

func readBackErr(l *Log) ([]storedRecord, []BatchHeader, error) {
	var out []storedRecord
	var batches []BatchHeader
	var c codecs
	err := l.Scan(l.StartOffset(), func(h BatchHeader, b []byte) error {
		if h.PartitionLeaderEpoch != 0 {
			return fmt.Errorf("batch at %d served with leader epoch %d", h.BaseOffset, h.PartitionLeaderEpoch)
		}
		batches = append(batches, h)
		area := b[BatchHeaderSize:]
		if h.Compression() != 0 {
			var err error
			if area, err = c.decompress(nil, h.Compression(), area, MaxDecompressedBatch); err != nil {
				return err
			}
		}
		return eachRecord(area, h.NumRecords, func(r *record) error {
			off := h.BaseOffset + int64(r.offsetDelta)
			if off > h.LastOffset() {
				return fmt.Errorf("record at %d beyond its batch's last offset %d", off, h.LastOffset())
			}
			ts := h.FirstTimestamp + r.tsDelta
			if h.Attributes&attrTimestampType != 0 {
				ts = h.MaxTimestamp
			}
			out = append(out, storedRecord{Offset: off, Key: string(r.key), Value: valueOf(r), Tombstone: !r.hasValue, NoKey: !r.hasKey, TS: ts, Batch: h})
			return nil
		})
	})
	if err != nil {
		return nil, nil, err
	}
	for i := 1; i < len(out); i++ {
		if out[i].Offset <= out[i-1].Offset {
			return nil, nil, fmt.Errorf("offsets not increasing: %d after %d", out[i].Offset, out[i-1].Offset)
		}
	}
	return out, batches, nil
}

func valueOf(r *record) string {
	if !r.hasValue {
		return ""
	}
	b := r.body[1:]
	_, k := binary.Varint(b)
	b = b[k:]
	_, k = binary.Varint(b)
	b = b[k:]
	kl, k := binary.Varint(b)
	b = b[k:]
	if kl > 0 {
		b = b[kl:]
	}
	vl, k := binary.Varint(b)
	return string(b[k : k+int(vl)])
}

// testClock is a settable clock for Config.Now.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.UnixMilli(1_700_000_000_000)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *testClock) Millis() int64 { return c.Now().UnixMilli() }

// testCleaner is a cleaner with a small I/O buffer, so tests cross buffer
// boundaries often.
func testCleaner() *Cleaner {
	return NewCleaner(CleanerConfig{DedupeBufferBytes: 1 << 20, IOBufferBytes: 700})
}

// latestByKey is the model: the last record per key among recs.
func latestByKey(recs []storedRecord) map[string]storedRecord {
	m := map[string]storedRecord{}
	for _, r := range recs {
		if !r.NoKey {
			m[r.Key] = r
		}
	}
	return m
}
