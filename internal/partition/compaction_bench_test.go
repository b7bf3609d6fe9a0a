package partition

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
)

// TestCompactionThroughputBesideProducers measures, on the real file system,
// how fast the cleaner gets through a dirty compacted log and what that
// costs producers writing acks=all to another partition at the same time:
// rounds alternate producers alone and producers beside a cleaner that
// cleans fresh copies of the same dirty log for the whole round, and every
// round is printed. Targets (the issue's): the cleaner reads at least 100
// MB/s of input while the producers keep at least 80% of their idle
// throughput. It runs only with IDEM_COMPACTION_BENCH=1 (it writes a few GB):
//
//	IDEM_COMPACTION_BENCH=1 go test ./internal/partition -run ThroughputBeside -v -timeout 30m
//
// IDEM_COMPACTION_BENCH_MB sizes the dirty log (default 256),
// IDEM_COMPACTION_BENCH_ROUNDS the rounds (default 3),
// IDEM_COMPACTION_BENCH_SECONDS each half of a round (default 5),
// IDEM_COMPACTION_BENCH_IO the cleaner's log.cleaner.io.max.bytes.per.second
// (default: the broker's default; 0 is unlimited), IDEM_COMPACTION_BENCH_CODEC
// its batches' codec (none or zstd; default none), and
// IDEM_COMPACTION_BENCH_NORMAL_PRIORITY=1 runs the cleaner at normal priority.
func TestCompactionThroughputBesideProducers(t *testing.T) {
	if os.Getenv("IDEM_COMPACTION_BENCH") == "" {
		t.Skip("set IDEM_COMPACTION_BENCH=1 to run the compaction benchmark")
	}
	envInt := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
			return v
		}
		return def
	}
	mb, rounds := envInt("IDEM_COMPACTION_BENCH_MB", 256), envInt("IDEM_COMPACTION_BENCH_ROUNDS", 3)
	prop, _ := config.Lookup("log.cleaner.io.max.bytes.per.second")
	ioRate, _ := strconv.ParseFloat(prop.Default, 64)
	if v := os.Getenv("IDEM_COMPACTION_BENCH_IO"); v != "" {
		ioRate, _ = strconv.ParseFloat(v, 64) // 0: unlimited
	}
	codec := os.Getenv("IDEM_COMPACTION_BENCH_CODEC")
	root := t.TempDir()
	template := filepath.Join(root, "template")
	built := time.Now()
	size := buildDirtyLog(t, template, mb<<20, codec)
	t.Logf("dirty log: %d MiB in %v (codec %q), GOMAXPROCS %d", size>>20, time.Since(built).Round(time.Millisecond), codec, runtime.GOMAXPROCS(0))

	cleaner := logstore.NewCleaner(logstore.CleanerConfig{IOBytesPerSecond: ioRate})
	window := time.Duration(envInt("IDEM_COMPACTION_BENCH_SECONDS", 5)) * time.Second
	var idle, busy []float64
	var cleanRates []float64
	copies := max(2, int(int64(window.Seconds())*400<<20/size)+1) // enough for 400 MB/s
	for r := range rounds {
		// Copies of the dirty log are made before the round, so that
		// copying is not counted as the cleaner's I/O.
		var dirs []string
		for i := range copies {
			dir := filepath.Join(root, fmt.Sprintf("clean%d-%d", r, i))
			if out, err := exec.Command("cp", "-r", template, dir).CombinedOutput(); err != nil {
				t.Fatalf("copy: %v %s", err, out)
			}
			dirs = append(dirs, dir)
		}
		exec.Command("sync").Run()
		idleRate := produceFor(t, filepath.Join(root, fmt.Sprint("idle", r)), window)
		stop := make(chan struct{})
		var cleaned, took atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if os.Getenv("IDEM_COMPACTION_BENCH_NORMAL_PRIORITY") == "" {
				logstore.BackgroundPriority() // as the broker's cleaner goroutine does
			}
			for _, dir := range dirs {
				select {
				case <-stop:
					return
				default:
				}
				n, d := cleanOnce(t, dir, cleaner, stop)
				cleaned.Add(n)
				took.Add(int64(d))
			}
			t.Errorf("round %d: the cleaner ran out of log copies", r)
		}()
		busyRate := produceFor(t, filepath.Join(root, fmt.Sprint("busy", r)), window)
		close(stop)
		wg.Wait()
		for _, dir := range dirs {
			os.RemoveAll(dir)
		}
		cleanRate := float64(cleaned.Load()) / 1e6 / time.Duration(took.Load()).Seconds()
		idle, busy, cleanRates = append(idle, idleRate), append(busy, busyRate), append(cleanRates, cleanRate)
		load, _ := os.ReadFile("/proc/loadavg")
		t.Logf("round %d: producers alone %.1f MB/s, beside the cleaner %.1f MB/s (%.0f%%); cleaner %.1f MB/s of input (%d MB cleaned in %v of cleaning); load %s",
			r, idleRate, busyRate, 100*busyRate/idleRate, cleanRate, cleaned.Load()/1e6, time.Duration(took.Load()).Round(time.Millisecond), strings.Fields(string(load))[0])
	}
	t.Logf("summary: producers idle %v MB/s, busy %v MB/s; cleaner %v MB/s; key map %d MiB", fmt1(idle), fmt1(busy), fmt1(cleanRates), cleaner.KeyMapBytes()>>20)
}

func fmt1(xs []float64) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += strconv.FormatFloat(x, 'f', 1, 64)
	}
	return s
}

// buildDirtyLog writes a compacted topic's log of about size bytes: batches
// of 100 records of 160 bytes over 200,000 keys, so that a clean removes
// most of the older records, in segments of 64 MiB.
func buildDirtyLog(t *testing.T, dir string, size int, codec string) int64 {
	p, err := Open(Config{Topic: "bench", FS: logstore.OSFS(), Dir: filepath.Join(dir, "0"), SnapshotPath: filepath.Join(dir, "0.producers"),
		Log: logstore.Config{SegmentBytes: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 140)
	var written int64
	for written < int64(size) {
		var recs []byte
		for i := range 100 {
			for j := range value {
				value[j] = byte('a' + rng.IntN(4))
			}
			r := kmsg.Record{OffsetDelta: int32(i), Key: []byte(fmt.Sprintf("key-%07d", rng.IntN(200_000))), Value: value}
			r.Length = int32(len(r.AppendTo(nil)) - 1)
			recs = r.AppendTo(recs)
		}
		b := benchBatch(t, recs, codec)
		res, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		written += int64(len(b))
		if written%(16<<20) < int64(len(b)) {
			if err := p.WaitDurable(context.Background(), res.LastOffset+1); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Seal the data: one more segment holds only a last record.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = Open(Config{Topic: "bench", FS: logstore.OSFS(), Dir: filepath.Join(dir, "0"), SnapshotPath: filepath.Join(dir, "0.producers"),
		Log: logstore.Config{SegmentBytes: 1024}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range 2 {
		r := kmsg.Record{Key: []byte("seal"), Value: []byte("seal")}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		res, err := p.Append(benchBatch(t, r.AppendTo(nil), ""))
		if err != nil {
			t.Fatal(err)
		}
		p.WaitDurable(context.Background(), res.LastOffset+1)
	}
	return written
}

func benchBatch(t *testing.T, recs []byte, codec string) []byte {
	n := int32(0)
	for rest := recs; len(rest) > 0; n++ {
		l, w := binaryVarint(rest)
		rest = rest[w+int(l):]
	}
	attrs := int16(0)
	if codec == "zstd" {
		attrs = 4
		recs = zstdCompress(t, recs)
	}
	now := time.Now().UnixMilli()
	b := kmsg.RecordBatch{Magic: 2, Attributes: attrs, LastOffsetDelta: n - 1, FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: n, Records: recs}
	out := b.AppendTo(nil)
	b.Length = int32(len(out) - 12)
	out = b.AppendTo(nil)
	logstore.FixCRC(out)
	return out
}

// cleanOnce opens the log copy in dir and cleans it once, returning the
// bytes of the segments it had to clean and the time the clean took.
func cleanOnce(t *testing.T, dir string, c *logstore.Cleaner, stop <-chan struct{}) (int64, time.Duration) {
	p, err := Open(Config{Topic: "bench", FS: logstore.OSFS(), Dir: filepath.Join(dir, "0"), SnapshotPath: filepath.Join(dir, "0.producers"),
		Log: logstore.Config{SegmentBytes: 64 << 20}, Logger: nil})
	if err != nil {
		t.Error(err)
		return 0, 0
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	began := time.Now()
	if err := p.Snapshot(); err != nil {
		t.Error(err)
	}
	st, err := p.Clean(ctx, c, CleanConfig{DeleteRetention: time.Hour})
	if err != nil {
		if ctx.Err() == nil {
			t.Error(err)
		}
		return st.BytesRead, time.Since(began) // a clean cut short counts what it read
	}
	return st.BytesRead, time.Since(began)
}

// produceFor runs 4 producers appending 16 KiB batches with acks=all
// (append, then wait for the fsync) to a fresh partition for d, and returns
// their MB/s.
func produceFor(t *testing.T, dir string, d time.Duration) float64 {
	p, err := Open(Config{Topic: "load", FS: logstore.OSFS(), Dir: filepath.Join(dir, "0"), SnapshotPath: filepath.Join(dir, "0.producers")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close(); os.RemoveAll(dir) }()
	var bytes atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kmsg.Record{Key: []byte(fmt.Sprint("w", w)), Value: make([]byte, 16<<10-100)}
			r.Length = int32(len(r.AppendTo(nil)) - 1)
			recs := r.AppendTo(nil)
			for time.Now().Before(deadline) {
				b := benchBatch(t, recs, "")
				res, err := p.Append(b)
				if err != nil {
					t.Error(err)
					return
				}
				if err := p.WaitDurable(context.Background(), res.LastOffset+1); err != nil {
					t.Error(err)
					return
				}
				bytes.Add(int64(len(b)))
			}
		}()
	}
	wg.Wait()
	return float64(bytes.Load()) / 1e6 / d.Seconds()
}

var benchZstd struct {
	once sync.Once
	enc  *zstd.Encoder
}

// zstdCompress compresses with one encoder for the whole test binary (it
// starts no goroutine at concurrency 1 with EncodeAll).
func zstdCompress(t *testing.T, b []byte) []byte {
	benchZstd.once.Do(func() {
		var err error
		if benchZstd.enc, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1)); err != nil {
			t.Fatal(err)
		}
	})
	return benchZstd.enc.EncodeAll(b, nil)
}
