package logstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// crashPoint is the state of the world at one simulated power loss: the
// file system as the crash left it and the batches acknowledged as durable
// before it happened.
type crashPoint struct {
	event SyncEvent
	fs    *MemFS
	acked map[int64]string
}

// TestCrashAtEverySyncPoint is C1 of the reliability plan. A concurrent
// workload of durable and non-durable appends runs on MemFS; at every sync
// point, just before and just after the sync takes effect, the test takes a
// power-loss clone (random un-synced tails kept, some torn, directory
// entries randomly kept or lost). Each clone must recover without error,
// hold every batch acknowledged as durable before the crash, serve only
// valid batches that were really appended at those offsets, and recover to
// the same log a second time.
func TestCrashAtEverySyncPoint(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 20
	}
	points := 0
	for seed := range seeds {
		points += runCrashSeed(t, uint64(seed))
		if t.Failed() {
			t.Fatalf("seed %d failed; rerun with this seed to reproduce", seed)
		}
	}
	t.Logf("%d seeds, %d crash points recovered and checked", seeds, points)
}

func runCrashSeed(t *testing.T, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, 0xc1))
	fsys := NewMemFS()
	// Odd seeds record recovery-point advances in the data directory's
	// shared file (a Disk for "/"), even ones in the log's own checkpoint.
	shared := seed%2 == 1
	cfg := Config{
		SegmentBytes:       int64(200 + rng.IntN(2000)),
		IndexIntervalBytes: 1 + rng.IntN(512),
		CheckpointInterval: []time.Duration{time.Nanosecond, time.Hour}[rng.IntN(2)],
		// Small enough that the active segment's prefix index is written
		// (and crashed in the middle of) many times per seed.
		ActiveIndexInterval: int64(1 + rng.IntN(1500)),
		Logger:              quietLogger,
	}
	if shared {
		cfg.Disk = mustOpenDisk(t, fsys)
	}
	l, err := Open(fsys, "/p", cfg)
	if err != nil {
		t.Fatalf("seed %d: open: %v", seed, err)
	}

	var mu sync.Mutex // guards appended, acked, points, cloneRand
	appended := map[int64]string{}
	acked := map[int64]string{}
	var points []crashPoint
	cloneRand := rand.New(rand.NewPCG(seed, 0xc2))
	fsys.SetSyncHook(func(ev SyncEvent) {
		mu.Lock()
		defer mu.Unlock()
		// Snapshot the acknowledgements before cloning: everything acked
		// before the clone was fsynced before it, so it must survive.
		ack := maps.Clone(acked)
		points = append(points, crashPoint{event: ev, acked: ack,
			fs: fsys.CrashClone(CrashOptions{Rand: cloneRand, TornTail: 0.3})})
	})

	const writers, perWriter = 4, 25
	durableFor := make([]float64, writers)
	for w := range durableFor {
		durableFor[w] = rng.Float64()
	}
	sizes := make([][]int, writers)
	for w := range sizes {
		for range perWriter {
			sizes[w] = append(sizes[w], rng.IntN(300))
		}
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range perWriter {
				payload := fmt.Sprintf("w%d-%d-", w, i)
				for len(payload) < sizes[w][i] {
					payload += "."
				}
				b := testBatch(int32(1+r.IntN(3)), time.Now().UnixMilli(), []byte(payload))
				info, err := l.Append(b)
				if err != nil {
					t.Errorf("seed %d: append: %v", seed, err)
					return
				}
				mu.Lock()
				appended[info.BaseOffset] = payload
				mu.Unlock()
				if r.Float64() < durableFor[w] {
					if err := l.WaitDurable(context.Background(), info.LastOffset+1); err != nil {
						t.Errorf("seed %d: wait durable: %v", seed, err)
						return
					}
					mu.Lock()
					acked[info.BaseOffset] = payload
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatalf("seed %d: close: %v", seed, err)
	}
	if shared {
		// As the broker does when it closes the data directory: write the
		// final points and join a flush still running in the background.
		if err := cfg.Disk.FlushRecoveryPoints(); err != nil {
			t.Fatalf("seed %d: flush recovery points: %v", seed, err)
		}
	}
	fsys.SetSyncHook(nil)

	for i, p := range points {
		checkRecovery(t, seed, i, p, appended, shared)
	}
	// After a clean close everything must be there.
	checkRecovery(t, seed, len(points), crashPoint{fs: fsys.CrashClone(CrashOptions{}), acked: appended}, appended, shared)
	return len(points)
}

func checkRecovery(t *testing.T, seed uint64, i int, p crashPoint, appended map[int64]string, shared bool) {
	t.Helper()
	where := fmt.Sprintf("seed %d, crash point %d (%+v)", seed, i, p.event)
	cfg := Config{Logger: quietLogger, CheckpointInterval: time.Hour}
	if shared {
		cfg.Disk = mustOpenDisk(t, p.fs)
	}
	l, err := Open(p.fs, "/p", cfg)
	if err != nil {
		t.Errorf("%s: recovery failed: %v", where, err)
		return
	}
	got, order, err := collect(l)
	if err != nil {
		t.Errorf("%s: scan after recovery: %v", where, err)
		l.Close()
		return
	}
	for off, payload := range p.acked {
		if got[off] != payload {
			t.Errorf("%s: durably acknowledged batch at %d lost (got %q, want %q)", where, off, got[off], payload)
		}
	}
	for _, off := range order {
		if appended[off] != got[off] {
			t.Errorf("%s: offset %d serves %q, but %q was appended there", where, off, got[off], appended[off])
		}
	}
	if l.DurableOffset() != l.EndOffset() {
		t.Errorf("%s: after recovery durable %d != end %d", where, l.DurableOffset(), l.EndOffset())
	}
	// Crash again right after recovery, keeping only what it synced:
	// recovery must have made its result durable and be repeatable.
	again := p.fs.CrashClone(CrashOptions{})
	if shared {
		cfg.Disk = mustOpenDisk(t, again)
	}
	l2, err := Open(again, "/p", cfg)
	if err != nil {
		t.Errorf("%s: second recovery failed: %v", where, err)
	} else {
		got2, _, err := collect(l2)
		if err != nil || !maps.Equal(got, got2) || l2.StartOffset() != l.StartOffset() {
			t.Errorf("%s: second recovery differs: %d vs %d batches (err %v)", where, len(got2), len(got), err)
		}
		l2.Close()
	}
	l.Close()
}

// TestRecoveryAfterKillMakesItsResultDurable covers the kill -9 case: the
// page cache survives a process crash, so recovery sees bytes that were
// never fsynced. Before it calls them durable (the high watermark) it must
// fsync them, or a power loss after the restart takes back what consumers
// were already served.
func TestRecoveryAfterKillMakesItsResultDurable(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 0xd1))
		fsys := NewMemFS()
		cfg := Config{Logger: quietLogger, CheckpointInterval: time.Hour}
		l := mustOpen(t, fsys, "/p", cfg)
		for i := range 10 + rng.IntN(30) {
			mustAppendDurable(t, l, testBatch(1, 1, []byte(fmt.Sprintf("d%d", i))))
		}
		// Hold the syncer so that the next appends stay in the page cache.
		release := make(chan struct{})
		fsys.SetSyncHook(func(ev SyncEvent) {
			if !ev.Done && !ev.Dir {
				<-release
			}
		})
		for i := range 1 + rng.IntN(30) {
			mustAppend(t, l, testBatch(1, 1, []byte(fmt.Sprintf("k%d", i))))
		}
		killed := fsys.KillClone() // no Close: the process died
		close(release)
		l.Close()
		r := mustOpen(t, killed, "/p", cfg)
		served, _, err := collect(r)
		if err != nil {
			t.Fatal(err)
		}
		durable := r.DurableOffset()
		// Power loss right after recovery: everything it called durable stays.
		lost := killed.CrashClone(CrashOptions{})
		r.Close()
		after := mustOpen(t, lost, "/p", cfg)
		kept, _, err := collect(after)
		after.Close()
		if err != nil {
			t.Fatal(err)
		}
		for off, p := range served {
			if off < durable && kept[off] != p {
				t.Fatalf("seed %d: offset %d (below the recovered high watermark %d) lost by a power loss after recovery", seed, off, durable)
			}
		}
	}
}

// mustOpenDisk is a Disk for the data directory "/" of fsys (no reserve).
func mustOpenDisk(t *testing.T, fsys *MemFS) *Disk {
	t.Helper()
	d, err := OpenDisk(fsys, "/", 0, quietLogger)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
