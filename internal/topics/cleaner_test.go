package topics

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
)

func recordBatch(key, value string) []byte {
	r := kmsg.Record{Key: []byte(key), Value: []byte(value)}
	r.Length = int32(len(r.AppendTo(nil)) - 1)
	b := kmsg.RecordBatch{Magic: 2, FirstTimestamp: time.Now().UnixMilli(), MaxTimestamp: time.Now().UnixMilli(),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: r.AppendTo(nil)}
	out := b.AppendTo(nil)
	b.Length = int32(len(out) - 12)
	out = b.AppendTo(nil)
	logstore.FixCRC(out)
	return out
}

func openCompactingManager(t *testing.T, mem logstore.FS, props map[string]string) *Manager {
	t.Helper()
	conf := config.New()
	for k, v := range props {
		if err := conf.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := catalog.Open(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: conf})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestManagerCompactsInTheBackground: a compacted topic's sealed segments
// are cleaned by the Manager's cleaner without anyone asking; a delete
// topic beside it is left alone; Close joins the cleaner.
func TestManagerCompactsInTheBackground(t *testing.T) {
	mem := logstore.NewMemFS()
	m := openCompactingManager(t, mem, map[string]string{"log.cleaner.backoff.ms": "5"})
	defer m.Close()
	small := map[string]string{"segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01"}
	compact := map[string]string{"cleanup.policy": "compact"}
	for k, v := range small {
		compact[k] = v
	}
	for name, cfg := range map[string]map[string]string{"kept": small, "compacted": compact} {
		if _, err := m.CreateTopic(name, 1, cfg); err != nil {
			t.Fatal(err)
		}
		p, _ := m.Partition(name, 0)
		for i := range 200 {
			res, err := p.Append(recordBatch(fmt.Sprint("k", i%5), fmt.Sprint("v", i)))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.WaitDurable(context.Background(), res.LastOffset+1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if tp, _ := m.Topic("compacted"); !m.Compacted(tp) {
		t.Fatal("compacted topic not reported compacted")
	}
	if tp, _ := m.Topic("kept"); m.Compacted(tp) {
		t.Fatal("delete topic reported compacted")
	}
	count := func(name string) int {
		p, _ := m.Partition(name, 0)
		n := 0
		for off := p.StartOffset(); off < p.HighWatermark(); {
			b, err := p.Read(off, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for len(b) > 0 {
				h, err := logstore.ParseBatch(b[:12+int(int32(uint32(b[8])<<24|uint32(b[9])<<16|uint32(b[10])<<8|uint32(b[11])))])
				if err != nil {
					t.Fatal(err)
				}
				n += int(h.NumRecords)
				off = h.NextOffset()
				b = b[h.TotalSize():]
			}
		}
		return n
	}
	deadline := time.Now().Add(20 * time.Second)
	for count("compacted") > 40 {
		if time.Now().After(deadline) {
			t.Fatalf("compacted topic still holds %d records", count("compacted"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := count("kept"); n != 200 {
		t.Fatalf("the delete topic holds %d records, want all 200", n)
	}
}

// TestCompactOnlyTopicsKeepEverythingRetentionWouldDelete: retention.ms and
// retention.bytes apply to delete and compact,delete topics only.
func TestCompactOnlyTopicsKeepEverythingRetentionWouldDelete(t *testing.T) {
	mem := logstore.NewMemFS()
	m := openCompactingManager(t, mem, map[string]string{"log.cleaner.enable": "false"})
	defer m.Close()
	for _, policy := range []string{"compact", "compact,delete", "delete"} {
		tp, err := m.CreateTopic("t-"+map[string]string{"compact": "c", "compact,delete": "cd", "delete": "d"}[policy], 1,
			map[string]string{"cleanup.policy": policy, "retention.ms": "1", "retention.bytes": "1", "max.compaction.lag.ms": "60000"})
		if err != nil {
			t.Fatal(err)
		}
		lc := m.LogConfig(tp)
		compactOnly := policy == "compact"
		if (lc.RetentionTime < 0 && lc.RetentionBytes <= 0) != compactOnly {
			t.Fatalf("%s: retention %v / %d bytes", policy, lc.RetentionTime, lc.RetentionBytes)
		}
		if policy != "delete" && lc.RollInterval != time.Minute {
			t.Fatalf("%s: segments roll after %v, want max.compaction.lag.ms", policy, lc.RollInterval)
		}
	}
}

// TestMaxCompactionLagCleansWhateverTheRatio: with a dirty ratio that can
// never be exceeded, a partition is still cleaned once its oldest
// uncleaned record is older than max.compaction.lag.ms; without the lag it
// is not.
func TestMaxCompactionLagCleansWhateverTheRatio(t *testing.T) {
	mem := logstore.NewMemFS()
	clock := time.UnixMilli(1_700_000_000_000)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	conf := config.New()
	conf.Set("log.cleaner.backoff.ms", "5")
	cat, err := catalog.Open(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: conf, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, name := range []string{"lagged", "ratio-only"} {
		cfg := map[string]string{"cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "1"}
		if name == "lagged" {
			cfg["max.compaction.lag.ms"] = "60000"
		}
		if _, err := m.CreateTopic(name, 1, cfg); err != nil {
			t.Fatal(err)
		}
		p, _ := m.Partition(name, 0)
		for i := range 100 {
			b := recordBatch(fmt.Sprint("k", i%3), fmt.Sprint("v", i))
			binary.BigEndian.PutUint64(b[27:], uint64(clock.UnixMilli()))
			binary.BigEndian.PutUint64(b[35:], uint64(clock.UnixMilli()))
			logstore.FixCRC(b)
			res, err := p.Append(b)
			if err != nil {
				t.Fatal(err)
			}
			p.WaitDurable(context.Background(), res.LastOffset+1)
		}
	}
	dirty := func(name string) int64 {
		p, _ := m.Partition(name, 0)
		return p.CleaningState(0).DirtyBytes
	}
	time.Sleep(100 * time.Millisecond)
	if dirty("lagged") == 0 || dirty("ratio-only") == 0 {
		t.Fatal("cleaned before the lag passed")
	}
	mu.Lock()
	clock = clock.Add(2 * time.Minute)
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for dirty("lagged") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("max.compaction.lag.ms passed but the partition was not cleaned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dirty("ratio-only") == 0 {
		t.Fatal("a partition below its dirty ratio and without max.compaction.lag.ms was cleaned")
	}
}
