package statelog

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
)

// versioned is one key's value in the crash test's owner: each write of a
// key carries the next version number, so recovery can tell which write of
// the key it holds.
type versioned struct {
	version int
	value   string
}

// op is one write of a key as the test remembers it.
type op struct {
	version int
	deleted bool
	value   string
}

// crashAt is the world at one simulated power loss.
type crashAt struct {
	event       logstore.SyncEvent
	fs          *logstore.MemFS
	acked       map[string]int // key → version acknowledged durable before the crash
	written     map[string]int // key → highest version appended before the crash
	compacting  bool
	description string
}

// TestCrashAtEverySyncPoint: writers append from several goroutines (most
// wait for durability, some do not) while a compactor compacts as often as
// it is due, with small segments so that compaction deletes files. At every
// sync point, just before and just after the sync, the test takes a
// power-loss clone (random un-synced tails kept, some torn). Each clone must
// open and replay without error; every key must hold the write acknowledged
// last before the crash or a later one, with that write's value; a key may
// be missing only if a delete at or after its acknowledged write was
// appended. After a clean close, replay must give exactly the final state.
// Crash points in the middle of compactions are counted and must occur.
func TestCrashAtEverySyncPoint(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 4
	}
	points, midCompaction := 0, 0
	for seed := range uint64(seeds) {
		n, mid := runCrashSeed(t, seed)
		points, midCompaction = points+n, midCompaction+mid
		if t.Failed() {
			t.Fatalf("seed %d failed; rerun with this seed to reproduce", seed)
		}
	}
	if midCompaction == 0 {
		t.Fatal("no crash point fell inside a compaction: the test does not cover it")
	}
	t.Logf("%d seeds, %d crash points recovered and checked, %d of them during a compaction", seeds, points, midCompaction)
}

func crashConfig(fs logstore.FS, segmentBytes int64, live func() int) Config {
	return Config{
		FS: fs, Dir: "state", Name: "crash test log", SegmentBytes: segmentBytes, CompactRecords: 8,
		Live: live, Now: time.Now, Logger: slog.New(slog.DiscardHandler),
	}
}

func encodeVersioned(v versioned) []byte { return []byte(fmt.Sprintf("%d:%s", v.version, v.value)) }

// replayState opens the log on fs and replays it into a map.
func replayState(fs logstore.FS, segmentBytes int64) (map[string]versioned, error) {
	state := map[string]versioned{}
	l, err := Open(crashConfig(fs, segmentBytes, func() int { return len(state) }))
	if err != nil {
		return nil, err
	}
	defer l.Close()
	err = l.Replay(func(_ Batch, _ int64, r Record) error {
		if r.Value == nil {
			delete(state, string(r.Key))
			return nil
		}
		ver, val, ok := strings.Cut(string(r.Value), ":")
		n, err := strconv.Atoi(ver)
		if !ok || err != nil {
			return fmt.Errorf("bad value %q", r.Value)
		}
		state[string(r.Key)] = versioned{n, val}
		return nil
	})
	return state, err
}

func runCrashSeed(t *testing.T, seed uint64) (points, midCompaction int) {
	rng := rand.New(rand.NewPCG(seed, 0x5e))
	segmentBytes := int64(256 + rng.IntN(2048))
	fs := logstore.NewMemFS()

	var mu sync.Mutex // the owner's lock: state and appends
	state := map[string]versioned{}
	l, err := Open(crashConfig(fs, segmentBytes, func() int { return len(state) }))
	if err != nil {
		t.Fatalf("seed %d: open: %v", seed, err)
	}

	// histMu guards history, acked, crashes and cloneRand. Lock order:
	// mu → histMu (writers record history under mu; the sync hook may run
	// under mu, inside an Append that rolls a segment).
	var histMu sync.Mutex
	history := map[string][]op{}
	acked := map[string]int{}
	var crashes []crashAt
	cloneRand := rand.New(rand.NewPCG(seed, 0xc1))
	var compacting atomic.Bool
	fs.SetSyncHook(func(ev logstore.SyncEvent) {
		histMu.Lock()
		defer histMu.Unlock()
		written := map[string]int{}
		for k, ops := range history {
			written[k] = ops[len(ops)-1].version
		}
		crashes = append(crashes, crashAt{event: ev, acked: maps.Clone(acked), written: written,
			compacting: compacting.Load(), fs: fs.CrashClone(logstore.CrashOptions{Rand: cloneRand, TornTail: 0.3})})
	})

	const writers, perWriter, keysPerWriter = 4, 40, 4
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			version := map[string]int{}
			for i := range perWriter {
				k := fmt.Sprintf("w%d-k%d", w, r.IntN(keysPerWriter))
				version[k]++
				o := op{version: version[k], deleted: r.IntN(5) == 0, value: fmt.Sprintf("w%d-%d", w, i)}
				rec := Record{Key: []byte(k)}
				if !o.deleted {
					rec.Value = encodeVersioned(versioned{o.version, o.value})
				}
				mu.Lock()
				// Into the history first: a sync hook may clone the log
				// as soon as the bytes are written.
				histMu.Lock()
				history[k] = append(history[k], o)
				histMu.Unlock()
				end, err := l.Append(Batch{}, []Record{rec})
				if err == nil {
					if o.deleted {
						delete(state, k)
					} else {
						state[k] = versioned{o.version, o.value}
					}
				}
				mu.Unlock()
				if err != nil {
					t.Errorf("seed %d: append: %v", seed, err)
					return
				}
				if r.IntN(7) == 0 {
					continue // not waited for: may or may not survive
				}
				if err := l.WaitDurable(context.Background(), end); err != nil {
					t.Errorf("seed %d: wait durable: %v", seed, err)
					return
				}
				histMu.Lock()
				acked[k] = max(acked[k], o.version)
				histMu.Unlock()
			}
		}()
	}
	var compactions atomic.Int32
	compact := func() bool {
		compacting.Store(true)
		defer compacting.Store(false)
		done, err := l.Compact(&mu, func(s *Snapshot) {
			for _, k := range sortedKeys(state) {
				s.Add(Batch{}, Record{Key: []byte(k), Value: encodeVersioned(state[k])}, nil)
			}
		})
		if err != nil {
			t.Errorf("seed %d: compact: %v", seed, err)
			return false
		}
		if done {
			compactions.Add(1)
		}
		return true
	}
	stop := make(chan struct{})
	var compactor sync.WaitGroup
	compactor.Add(1)
	go func() {
		defer compactor.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !compact() {
				return
			}
			time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
		}
	}()
	wg.Wait()
	close(stop)
	compactor.Wait()
	// However the goroutines were scheduled, end with one compaction: the
	// writers wrote far more records than twice the live keys since the
	// last one, or the compactor just ran.
	compact()
	if compactions.Load() == 0 {
		t.Errorf("seed %d: the log was never compacted", seed)
	}
	final := maps.Clone(state)
	if err := l.Close(); err != nil {
		t.Fatalf("seed %d: close: %v", seed, err)
	}
	fs.SetSyncHook(nil)

	for i, c := range crashes {
		c.description = fmt.Sprintf("seed %d, crash point %d (%+v, during compaction %v)", seed, i, c.event, c.compacting)
		checkCrash(t, c, history, segmentBytes)
		if c.compacting {
			midCompaction++
		}
	}
	got, err := replayState(fs.CrashClone(logstore.CrashOptions{}), segmentBytes)
	if err != nil {
		t.Fatalf("seed %d: replay after a clean close: %v", seed, err)
	}
	if !maps.Equal(got, final) {
		t.Errorf("seed %d: replay after compactions and a clean close differs from memory:\n got  %v\n want %v", seed, got, final)
	}
	return len(crashes), midCompaction
}

func checkCrash(t *testing.T, c crashAt, history map[string][]op, segmentBytes int64) {
	t.Helper()
	got, err := replayState(c.fs, segmentBytes)
	if err != nil {
		t.Errorf("%s: recovery failed: %v", c.description, err)
		return
	}
	for k, v := range got {
		ops := history[k]
		if v.version < 1 || v.version > c.written[k] || ops[v.version-1].deleted || ops[v.version-1].value != v.value {
			t.Errorf("%s: %s recovered as version %d %q, which was never written before the crash", c.description, k, v.version, v.value)
		}
		if v.version < c.acked[k] {
			t.Errorf("%s: %s recovered as version %d, but version %d was acknowledged durable", c.description, k, v.version, c.acked[k])
		}
	}
	for k, a := range c.acked {
		if _, ok := got[k]; ok {
			continue
		}
		deleted := false
		for _, o := range history[k][a-1 : c.written[k]] {
			deleted = deleted || o.deleted
		}
		if !deleted {
			t.Errorf("%s: %s is gone, but version %d was acknowledged durable and no later delete was written", c.description, k, a)
		}
	}
	// Recovery is repeatable: a second power loss right after it changes
	// nothing.
	again, err := replayState(c.fs.CrashClone(logstore.CrashOptions{}), segmentBytes)
	if err != nil || !maps.Equal(got, again) {
		t.Errorf("%s: a second recovery differs (err %v)", c.description, err)
	}
}
