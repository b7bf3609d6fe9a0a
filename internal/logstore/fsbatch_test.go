package logstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrashWhileLogsShareFileSystemSyncs is C1 for the group commit across
// logs: several logs of one data directory are appended to at once by
// durable writers, with batching forced (one solo fsync at a time), so most
// rounds are a single SyncFileSystem standing in for many logs' fsyncs. At
// every sync point the test takes a power-loss clone; every log must recover
// with every batch acknowledged before the crash, and only batches really
// appended.
func TestCrashWhileLogsShareFileSystemSyncs(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 6
	}
	var points, fsSyncs int
	for seed := range uint64(seeds) {
		p, n := runSharedSyncCrashSeed(t, seed)
		points += p
		fsSyncs += n
		if t.Failed() {
			t.Fatalf("seed %d failed; rerun with this seed to reproduce", seed)
		}
	}
	if fsSyncs == 0 {
		t.Fatal("no round was synced as a batch: the test did not exercise SyncFileSystem")
	}
	t.Logf("%d seeds, %d crash points checked, %d file-system syncs", seeds, points, fsSyncs)
}

func runSharedSyncCrashSeed(t *testing.T, seed uint64) (points, fsSyncs int) {
	const logs, writers, perWriter = 8, 4, 15
	rng := rand.New(rand.NewPCG(seed, 0xb4))
	fsys := NewMemFS()
	disk := mustOpenDisk(t, fsys)
	disk.SetSoloSyncs(1)
	cfg := Config{
		SegmentBytes:       int64(300 + rng.IntN(1500)),
		CheckpointInterval: []time.Duration{time.Nanosecond, time.Hour}[rng.IntN(2)],
		Logger:             quietLogger,
		Disk:               disk,
	}
	open := make([]*Log, logs)
	for i := range open {
		open[i] = mustOpen(t, fsys, fmt.Sprintf("/p%d", i), cfg)
	}

	var mu sync.Mutex // guards appended, acked, crashes, cloneRand
	appended := make([]map[int64]string, logs)
	acked := make([]map[int64]string, logs)
	for i := range logs {
		appended[i], acked[i] = map[int64]string{}, map[int64]string{}
	}
	type crash struct {
		fs    *MemFS
		acked []map[int64]string
		event SyncEvent
	}
	var crashes []crash
	cloneRand := rand.New(rand.NewPCG(seed, 0xb5))
	fsys.SetSyncHook(func(ev SyncEvent) {
		mu.Lock()
		defer mu.Unlock()
		ack := make([]map[int64]string, logs)
		for i := range acked {
			ack[i] = maps.Clone(acked[i])
		}
		crashes = append(crashes, crash{event: ev, acked: ack,
			fs: fsys.CrashClone(CrashOptions{Rand: cloneRand, TornTail: 0.3})})
	})

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range perWriter {
				which := r.IntN(logs)
				payload := fmt.Sprintf("w%d-%d-%s", w, i, make([]byte, r.IntN(200)))
				info, err := open[which].Append(testBatch(1, time.Now().UnixMilli(), []byte(payload)))
				if err != nil {
					t.Errorf("seed %d: append: %v", seed, err)
					return
				}
				mu.Lock()
				appended[which][info.BaseOffset] = payload
				mu.Unlock()
				if err := open[which].WaitDurable(context.Background(), info.LastOffset+1); err != nil {
					t.Errorf("seed %d: wait durable: %v", seed, err)
					return
				}
				mu.Lock()
				acked[which][info.BaseOffset] = payload
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, l := range open {
		if err := l.Close(); err != nil {
			t.Fatalf("seed %d: close: %v", seed, err)
		}
	}
	if err := disk.FlushRecoveryPoints(); err != nil { // joins a background flush
		t.Fatalf("seed %d: flush recovery points: %v", seed, err)
	}
	fsys.SetSyncHook(nil)

	for i, c := range crashes {
		where := fmt.Sprintf("seed %d, crash point %d (%+v)", seed, i, c.event)
		for p := range logs {
			rcfg := Config{Logger: quietLogger, CheckpointInterval: time.Hour, Disk: mustOpenDisk(t, c.fs)}
			l, err := Open(c.fs, fmt.Sprintf("/p%d", p), rcfg)
			if err != nil {
				t.Errorf("%s: log %d: recovery failed: %v", where, p, err)
				continue
			}
			got, order, err := collect(l)
			l.Close()
			if err != nil {
				t.Errorf("%s: log %d: scan after recovery: %v", where, p, err)
				continue
			}
			for off, payload := range c.acked[p] {
				if got[off] != payload {
					t.Errorf("%s: log %d: durably acknowledged batch at %d lost (got %q)", where, p, off, got[off])
				}
			}
			for _, off := range order {
				if appended[p][off] != got[off] {
					t.Errorf("%s: log %d: offset %d serves %q, but %q was appended there", where, p, off, got[off], appended[p][off])
				}
			}
		}
	}
	return len(crashes), fsys.FileSystemSyncs()
}

// With no more logs syncing at once than the solo limit, every log fsyncs
// its own file, as without a batcher: one partition never waits for
// another's fsync, nor pays for another program's dirty pages.
func TestFewLogsSyncTheirOwnFiles(t *testing.T) {
	fsys := NewMemFS()
	disk := mustOpenDisk(t, fsys)
	disk.SetSoloSyncs(2)
	cfg := Config{Logger: quietLogger, Disk: disk}
	a := mustOpen(t, fsys, "/a", cfg)
	defer a.Close()
	b := mustOpen(t, fsys, "/b", cfg)
	defer b.Close()
	var wg sync.WaitGroup
	for _, l := range []*Log{a, b} {
		wg.Go(func() {
			for i := range 50 {
				mustAppendDurable(t, l, testBatch(1, int64(i), []byte("x")))
			}
		})
	}
	wg.Wait()
	if n := fsys.FileSystemSyncs(); n != 0 {
		t.Fatalf("%d file-system syncs for two logs with a solo limit of 2", n)
	}
	if syncs, logs := disk.FileSystemSyncs(); syncs != 0 || logs != 0 {
		t.Fatalf("Disk reports %d file-system syncs covering %d logs, want none", syncs, logs)
	}
}

// A failed file-system sync fails every log of its batch: it cannot tell
// whose data was not written, so none of them may call its appends durable.
func TestFailedFileSystemSyncPoisonsEveryLogOfTheBatch(t *testing.T) {
	fsys := NewMemFS()
	disk := mustOpenDisk(t, fsys)
	disk.SetSoloSyncs(1)
	const n = 6
	logs := openLogs(t, fsys, Config{Logger: quietLogger, Disk: disk}, n)
	// Hold the first fsyncs (the solo one and a batch of one behind it)
	// until every other log has asked for durability and gathered into
	// one batch; then fail every sync from there on.
	release := make(chan struct{})
	var once sync.Once
	fsys.SetSyncHook(func(ev SyncEvent) {
		if !ev.Done {
			once.Do(func() { <-release })
		}
	})
	failure := errors.New("injected EIO")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, l := range logs {
		info := mustAppend(t, l, testBatch(1, 1, []byte("payload")))
		wg.Go(func() { errs[i] = l.WaitDurable(context.Background(), info.LastOffset+1) })
	}
	waitFor(t, func() bool {
		disk.batcher.mu.Lock()
		defer disk.batcher.mu.Unlock()
		return len(disk.batcher.next) == n-2
	})
	fsys.SetSyncError(failure)
	close(release)
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrPoisoned) || !strings.Contains(fmt.Sprint(err), failure.Error()) {
			t.Errorf("log %d: WaitDurable = %v, want ErrPoisoned by the injected failure", i, err)
		}
		if logs[i].Err() == nil {
			t.Errorf("log %d is not poisoned after its batch's sync failed", i)
		}
	}
	if fsys.FileSystemSyncs() == 0 {
		t.Fatal("the gathered logs were not synced as one batch")
	}
}

// openLogs opens n logs /p0 … /p(n-1) with cfg, closed when the test ends.
func openLogs(t *testing.T, fsys FS, cfg Config, n int) []*Log {
	t.Helper()
	logs := make([]*Log, n)
	for i := range logs {
		logs[i] = mustOpen(t, fsys, fmt.Sprintf("/p%d", i), cfg)
		t.Cleanup(func() { logs[i].Close() })
	}
	return logs
}

// slowSyncs makes every sync of fsys take 200 µs, as on a disk, so that
// logs needing one at the same moment gather into batches.
func slowSyncs(fsys *MemFS) {
	fsys.SetSyncHook(func(ev SyncEvent) {
		if !ev.Done {
			time.Sleep(200 * time.Microsecond)
		}
	})
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A file-system sync counts for the open-file cache as an fsync of every
// file of its batch: the files become idle and are closed down to the
// limit, as after their own fsyncs.
func TestFilesSyncedInABatchAreClosedToTheLimit(t *testing.T) {
	fsys := NewMemFS()
	disk := mustOpenDisk(t, fsys)
	disk.SetSoloSyncs(1)
	disk.Files().SetLimit(3)
	slowSyncs(fsys)
	logs := openLogs(t, fsys, Config{Logger: quietLogger, Disk: disk}, 12)
	var wg sync.WaitGroup
	for round := range 20 {
		for _, l := range logs {
			wg.Go(func() { mustAppendDurable(t, l, testBatch(1, int64(round), []byte("x"))) })
		}
		wg.Wait()
	}
	if fsys.FileSystemSyncs() == 0 {
		t.Fatal("no batch was synced as a whole: the test did not exercise SyncFileSystem")
	}
	waitFor(t, func() bool { return disk.Files().Open() <= 3 })
}

// A log whose directory is on another file system than the data directory
// (mounted or linked elsewhere) is never counted as covered by a sync of
// the data directory's file system: it fsyncs its own file, and what it
// acknowledged survives a power loss.
func TestLogOnAnotherFileSystemSyncsItsOwnFile(t *testing.T) {
	fsys := NewMemFS()
	fsys.SetForeignFileSystem("/elsewhere")
	disk := mustOpenDisk(t, fsys)
	disk.SetSoloSyncs(1)
	slowSyncs(fsys)
	cfg := Config{Logger: quietLogger, Disk: disk}
	foreign := mustOpen(t, fsys, "/elsewhere/p", cfg)
	defer foreign.Close()
	logs := append(openLogs(t, fsys, cfg, 6), foreign) // last: rarely the one syncing alone
	var wg sync.WaitGroup
	for round := range 30 {
		for _, l := range logs {
			wg.Go(func() { mustAppendDurable(t, l, testBatch(1, int64(round), []byte("x"))) })
		}
		wg.Wait()
		// Every batch acknowledged so far survives a power loss now.
		crashed := fsys.CrashClone(CrashOptions{})
		l, err := Open(crashed, "/elsewhere/p", Config{Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		got := l.EndOffset()
		l.Close()
		if got != int64(round+1) {
			t.Fatalf("round %d: after a power loss the log on another file system holds %d of its %d acknowledged batches", round, got, round+1)
		}
	}
	if fsys.FileSystemSyncs() == 0 {
		t.Fatal("no batch was synced as a whole: the test did not exercise SyncFileSystem")
	}
}
