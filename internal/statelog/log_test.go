package statelog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
)

// kv is the smallest owner: a map of strings, one record per key, whose
// snapshot is one record per live key.
type kv struct {
	mu    sync.Mutex
	state map[string]string
	log   *Log
	kicks atomic.Int32
}

func testConfig(fs logstore.FS) Config {
	return Config{
		FS: fs, Dir: "state", Name: "test log",
		SegmentBytes: 4096, CompactRecords: 20,
		Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) }, Logger: slog.New(slog.DiscardHandler),
	}
}

func openKV(t *testing.T, cfg Config) *kv {
	t.Helper()
	o := &kv{state: map[string]string{}}
	cfg.Live = func() int { return len(o.state) }
	cfg.Kick = func() { o.kicks.Add(1) }
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	o.log = l
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := l.Replay(func(_ Batch, _ int64, r Record) error { return o.applyLocked(r) }); err != nil {
		l.Close()
		t.Fatalf("Replay: %v", err)
	}
	return o
}

func (o *kv) applyLocked(r Record) error {
	k, ok := strings.CutPrefix(string(r.Key), "k:")
	if !ok {
		return fmt.Errorf("key %q: %w", r.Key, ErrUnknownRecord)
	}
	if r.Value == nil {
		delete(o.state, k)
	} else {
		o.state[k] = string(r.Value)
	}
	return nil
}

func record(k, v string) Record {
	if v == "" {
		return Record{Key: []byte("k:" + k)}
	}
	return Record{Key: []byte("k:" + k), Value: []byte(v)}
}

// set writes k=v ("" deletes k) and returns once it is durable.
func (o *kv) set(t *testing.T, k, v string) {
	t.Helper()
	o.mu.Lock()
	end, err := o.log.Append(Batch{}, []Record{record(k, v)})
	if err == nil {
		o.applyLocked(record(k, v))
	}
	o.mu.Unlock()
	if err == nil {
		err = o.log.WaitDurable(context.Background(), end)
	}
	if err != nil {
		t.Fatalf("set %s=%q: %v", k, v, err)
	}
}

func (o *kv) snapshot(s *Snapshot) {
	for _, k := range sortedKeys(o.state) {
		s.Add(Batch{}, record(k, o.state[k]), nil)
	}
}

func (o *kv) compact(t *testing.T) bool {
	t.Helper()
	done, err := o.log.Compact(&o.mu, o.snapshot)
	if err != nil {
		t.Fatalf("Compact: %v", err)
	}
	return done
}

func (o *kv) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	for _, k := range sortedKeys(o.state) {
		fmt.Fprintf(&b, "%s=%s ", k, o.state[k])
	}
	return b.String()
}

func TestOpenRefusesMissingSettings(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no FS":             func(c *Config) { c.FS = nil },
		"no dir":            func(c *Config) { c.Dir = "" },
		"zero segment size": func(c *Config) { c.SegmentBytes = 0 },
		"zero compaction":   func(c *Config) { c.CompactRecords = 0 },
		"no Live":           func(c *Config) { c.Live = nil },
		"no clock":          func(c *Config) { c.Now = nil },
		"no logger":         func(c *Config) { c.Logger = nil },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(logstore.NewMemFS())
			cfg.Live = func() int { return 0 }
			mod(&cfg)
			if l, err := Open(cfg); err == nil {
				l.Close()
				t.Fatal("Open accepted the config")
			}
		})
	}
}

// Append reports where records land, Replay gives them back in order with
// their positions and framing, and a restart replays the same state.
func TestAppendAndReplay(t *testing.T) {
	fs := logstore.NewMemFS()
	o := openKV(t, testConfig(fs))
	o.mu.Lock()
	end, err := o.log.Append(Batch{}, []Record{record("a", "1"), record("b", "2")})
	if err != nil || end != 2 {
		t.Fatalf("Append = %d, %v; want end 2", end, err)
	}
	txnBatch := Batch{Transactional: true, ProducerID: 7, ProducerEpoch: 3}
	marker := Batch{Transactional: true, Control: true, ProducerID: 7, ProducerEpoch: 3}
	if end, err = o.log.Append(txnBatch, []Record{record("c", "3")}); err != nil || end != 3 {
		t.Fatalf("Append = %d, %v; want end 3", end, err)
	}
	if end, err = o.log.Append(marker, []Record{{Key: []byte("marker")}}); err != nil || end != 4 {
		t.Fatalf("Append = %d, %v; want end 4", end, err)
	}
	if e, err := o.log.Append(Batch{}, nil); err != nil || e != 4 {
		t.Fatalf("empty Append = %d, %v; want the end, 4", e, err)
	}
	o.mu.Unlock()
	if err := o.log.WaitDurable(context.Background(), end); err != nil {
		t.Fatal(err)
	}
	o.log.Close()

	l, err := Open(Config{FS: fs, Dir: "state", Name: "test log", SegmentBytes: 4096, CompactRecords: 20,
		Live: func() int { return 0 }, Now: time.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got []string
	err = l.Replay(func(b Batch, pos int64, r Record) error {
		got = append(got, fmt.Sprintf("%d %s=%s %+v", pos, r.Key, r.Value, b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"0 k:a=1 {Transactional:false Control:false ProducerID:0 ProducerEpoch:0}",
		"1 k:b=2 {Transactional:false Control:false ProducerID:0 ProducerEpoch:0}",
		"2 k:c=3 {Transactional:true Control:false ProducerID:7 ProducerEpoch:3}",
		"3 marker= {Transactional:true Control:true ProducerID:7 ProducerEpoch:3}",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replay:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if l.Records() != 4 {
		t.Fatalf("Records after replay = %d, want 4", l.Records())
	}
}

// A record the owner does not know is skipped with one warning; any other
// replay error stops the replay.
func TestReplaySkipsUnknownRecords(t *testing.T) {
	fs := logstore.NewMemFS()
	o := openKV(t, testConfig(fs))
	o.set(t, "a", "1")
	o.mu.Lock()
	end, err := o.log.Append(Batch{}, []Record{{Key: []byte("from a newer idem"), Value: []byte("?")}, record("b", "2")})
	o.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	o.log.WaitDurable(context.Background(), end)
	o.log.Close()

	var logs bytes.Buffer
	cfg := testConfig(fs)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	o = openKV(t, cfg)
	defer o.log.Close()
	if got := o.String(); got != "a=1 b=2 " {
		t.Fatalf("state after replay: %q", got)
	}
	if !strings.Contains(logs.String(), "skipped unknown records") || !strings.Contains(logs.String(), "count=1") {
		t.Fatalf("no warning about the skipped record: %q", logs.String())
	}

	boom := errors.New("bad record")
	l2, err := Open(Config{FS: fs.CrashClone(logstore.CrashOptions{}), Dir: "state", Name: "test log", SegmentBytes: 4096,
		CompactRecords: 20, Live: func() int { return 0 }, Now: time.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if err := l2.Replay(func(Batch, int64, Record) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Replay = %v, want the callback's error", err)
	}
}

// Compaction waits until the log holds more than max(2 × live,
// CompactRecords) records; Append kicks the owner once it does; the
// snapshot replays to the same state and the log below it is deleted.
func TestCompaction(t *testing.T) {
	fs := logstore.NewMemFS()
	cfg := testConfig(fs)
	o := openKV(t, cfg)
	for i := range 20 {
		o.set(t, fmt.Sprint("k", i%15), fmt.Sprint(i))
	}
	if o.compact(t) || o.kicks.Load() != 0 {
		t.Fatalf("compacted (or kicked %d times) at 20 records: not more than CompactRecords", o.kicks.Load())
	}
	for i := range 10 {
		o.set(t, fmt.Sprint("k", i%15), fmt.Sprint("x", i))
	}
	// 30 records, 15 live: not more than twice the live records.
	if o.compact(t) {
		t.Fatal("compacted at 30 records with 15 live")
	}
	for i := range 40 {
		o.set(t, fmt.Sprint("k", i%15), fmt.Sprint("y", i))
	}
	if o.kicks.Load() == 0 {
		t.Fatal("Append never kicked the owner although compaction is due")
	}
	before, start := o.String(), o.log.Start()
	if !o.compact(t) {
		t.Fatal("not compacted at 70 records with 15 live")
	}
	if o.log.Records() != 15 || o.log.Start() <= start {
		t.Fatalf("after compaction: %d records since the snapshot (want 15), start %d", o.log.Records(), o.log.Start())
	}
	o.log.Close()
	o = openKV(t, cfg)
	defer o.log.Close()
	if after := o.String(); after != before {
		t.Fatalf("state changed across compaction and restart:\n before %s\n after  %s", before, after)
	}
}

// Snapshot batches are cut at 1000 records and at 1 MiB, and landed
// reports every record's position.
func TestSnapshotBatchesAreBounded(t *testing.T) {
	cfg := testConfig(logstore.NewMemFS())
	cfg.SegmentBytes = 64 << 20
	cfg.CompactRecords = 1
	o := openKV(t, cfg)
	defer o.log.Close()
	o.set(t, "x", "1")
	o.set(t, "x", "2")
	o.set(t, "x", "3")
	big := strings.Repeat("v", 300<<10)
	positions := map[int64]bool{}
	var sizes []int
	_, err := o.log.Compact(&o.mu, func(s *Snapshot) {
		for i := range 2500 {
			s.Add(Batch{}, record(fmt.Sprint("small", i), "v"), func(pos int64) { positions[pos] = true })
		}
		for i := range 7 {
			s.Add(Batch{}, record(fmt.Sprint("big", i), big), func(pos int64) { positions[pos] = true })
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(positions) != 2507 {
		t.Fatalf("landed reported %d distinct positions, want 2507", len(positions))
	}
	err = o.log.log.Scan(o.log.Start(), func(h logstore.BatchHeader, b []byte) error {
		sizes = append(sizes, int(h.NumRecords))
		if h.NumRecords > maxSnapshotBatchRecords || len(b) > maxSnapshotBatchBytes+len(big)+1024 {
			t.Errorf("snapshot batch of %d records, %d bytes", h.NumRecords, len(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sizes) != "[1000 1000 504 3]" { // 500 small and 4 big pass 1 MiB
		t.Fatalf("snapshot batch sizes %v, want [1000 1000 504 3]", sizes)
	}
}

// Framing never mixes within a snapshot batch: a change of Batch starts a
// new one, so transactional records keep their producer.
func TestSnapshotKeepsFraming(t *testing.T) {
	fs := logstore.NewMemFS()
	cfg := testConfig(fs)
	cfg.CompactRecords = 1
	o := openKV(t, cfg)
	o.set(t, "a", "1")
	o.set(t, "a", "2")
	o.set(t, "a", "3")
	p5 := Batch{Transactional: true, ProducerID: 5}
	p6 := Batch{Transactional: true, ProducerID: 6, ProducerEpoch: 1}
	if _, err := o.log.Compact(&o.mu, func(s *Snapshot) {
		s.Add(Batch{}, record("a", "3"), nil)
		s.Add(p5, record("b", "5"), nil)
		s.Add(p5, record("c", "5"), nil)
		s.Add(p6, record("d", "6"), nil)
	}); err != nil {
		t.Fatal(err)
	}
	start := o.log.Start()
	o.log.Close()
	l, err := Open(Config{FS: fs, Dir: "state", Name: "test log", SegmentBytes: 4096, CompactRecords: 20,
		Live: func() int { return 0 }, Now: time.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got []string
	l.Replay(func(b Batch, pos int64, r Record) error {
		got = append(got, fmt.Sprintf("%d %s %v/%d/%d", pos-start, r.Key, b.Transactional, b.ProducerID, b.ProducerEpoch))
		return nil
	})
	want := "[0 k:a false/0/0 1 k:b true/5/0 2 k:c true/5/0 3 k:d true/6/1]"
	if fmt.Sprint(got) != want {
		t.Fatalf("replayed snapshot %v, want %s", got, want)
	}
}

// Appends from many goroutines, each waiting for its own durability, share
// fsyncs (group commit): while one fsync is in flight every writer appends,
// and the next fsync covers them all. All of them survive a power loss.
func TestConcurrentAppendsShareFsyncs(t *testing.T) {
	fs := logstore.NewMemFS()
	o := openKV(t, testConfig(fs))
	const writers = 8
	var segmentSyncs atomic.Int32
	hold, held := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fs.SetSyncHook(func(ev logstore.SyncEvent) {
		if ev.Done || !strings.HasSuffix(ev.Name, ".log") {
			return
		}
		segmentSyncs.Add(1)
		once.Do(func() { close(held); <-hold })
	})
	o.mu.Lock()
	end, err := o.log.Append(Batch{}, []Record{record("first", "v")})
	o.applyLocked(record("first", "v"))
	o.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	<-held // the syncer is inside the fsync of "first"
	segmentSyncs.Store(0)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.set(t, fmt.Sprint("w", w), "v")
		}()
	}
	for o.log.End() < end+writers {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()
	if n := segmentSyncs.Load(); n >= writers {
		t.Fatalf("%d durable appends took %d fsyncs: they were not shared", writers, n)
	}
	fs.SetSyncHook(nil)
	want := o.String()
	o.log.Close()
	o = openKV(t, testConfig(fs.CrashClone(logstore.CrashOptions{})))
	defer o.log.Close()
	if got := o.String(); got != want {
		t.Fatalf("after a power loss:\n got  %s\n want %s", got, want)
	}
}

// A failed fsync poisons the log: the waiting append fails, Err says why,
// and nothing more is accepted.
func TestSyncFailurePoisons(t *testing.T) {
	fs := logstore.NewMemFS()
	o := openKV(t, testConfig(fs))
	defer o.log.Close()
	o.set(t, "a", "1")
	fs.SetSyncError(errors.New("disk on fire"))
	o.mu.Lock()
	end, err := o.log.Append(Batch{}, []Record{record("a", "2")})
	o.mu.Unlock()
	if err == nil {
		err = o.log.WaitDurable(context.Background(), end)
	}
	if !errors.Is(err, logstore.ErrPoisoned) || !errors.Is(o.log.Err(), logstore.ErrPoisoned) {
		t.Fatalf("append after a failed fsync: %v (Err %v), want ErrPoisoned", err, o.log.Err())
	}
	if _, err := o.log.Append(Batch{}, []Record{record("a", "3")}); err == nil {
		t.Fatal("a poisoned log accepted an append")
	}
}
