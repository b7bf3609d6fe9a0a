package logstore

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCleanSurvivesACrashAtEverySyncPoint is C1 for compaction: cleaning
// rounds (rewrites, merges of segment groups, delete horizons passing) run
// while writers append durably; at every sync point, just before and just
// after it takes effect, a power-loss clone is taken (un-synced tails and
// directory entries randomly kept, lost or torn). Each clone must recover,
// hold every acknowledged append, and show every segment group of the clean
// either exactly as it was before the round or exactly as the round makes
// it, never a mix; recovery must be repeatable.
func TestCleanSurvivesACrashAtEverySyncPoint(t *testing.T) {
	skipUnderRace(t)
	seeds := 40
	if testing.Short() {
		seeds = 6
	}
	points := 0
	for seed := range seeds {
		problems, n := runCleanCrashSeed(t, uint64(seed))
		points += n
		for _, p := range problems {
			t.Error(p)
		}
		if t.Failed() {
			t.Fatalf("seed %d failed; rerun with this seed to reproduce", seed)
		}
	}
	t.Logf("%d seeds, %d crash points recovered and checked", seeds, points)
}

// TestCleanCrashTestCatchesABrokenSwap is the twin that shows the test above
// can fail: with the swap broken on purpose (the new segment not fsynced
// before the commit; the old segments removed before the rename is
// durable), the same checks find lost or mixed data.
func TestCleanCrashTestCatchesABrokenSwap(t *testing.T) {
	skipUnderRace(t)
	for _, fault := range []int{swapSkipsFsync, swapRemovesOldFirst} {
		func() {
			swapFault = fault
			defer func() { swapFault = swapIntact }()
			for seed := range uint64(40) {
				if problems, _ := runCleanCrashSeed(t, seed); len(problems) > 0 {
					t.Logf("fault %d caught at seed %d: %s (and %d more)", fault, seed, problems[0], len(problems)-1)
					return
				}
			}
			t.Fatalf("the crash test did not notice broken swap %d in 40 seeds", fault)
		}()
	}
}

// cleanCrashPoint is the world at one simulated power loss during a clean.
type cleanCrashPoint struct {
	event SyncEvent
	fs    *MemFS
	acked map[int64]string // offset → value of appends acknowledged as durable
}

// runCleanCrashSeed runs three cleaning rounds of one seed and returns the
// problems found and the number of crash points checked.
func runCleanCrashSeed(t *testing.T, seed uint64) ([]string, int) {
	rng := rand.New(rand.NewPCG(seed, 0xc1ea))
	fsys := NewMemFS()
	clock := newTestClock()
	cfg := Config{
		SegmentBytes:        int64(250 + rng.IntN(900)),
		IndexIntervalBytes:  1 + rng.IntN(400),
		CheckpointInterval:  []time.Duration{time.Nanosecond, time.Hour}[rng.IntN(2)],
		ActiveIndexInterval: int64(1 + rng.IntN(1500)),
		Logger:              quietLogger,
		Now:                 clock.Now,
	}
	l, err := Open(fsys, "/p", cfg)
	if err != nil {
		t.Fatalf("seed %d: open: %v", seed, err)
	}
	defer func() { l.Close() }()
	lastData := map[int64]int64{}
	seqs := map[int64]int32{}
	keys := 3 + rng.IntN(10)
	appendRandom := func(n int) {
		for range n {
			var recs []kv
			for range 1 + rng.IntN(4) {
				k := fmt.Sprintf("k%d", rng.IntN(keys))
				if rng.IntN(6) == 0 {
					recs = append(recs, del(k))
				} else {
					recs = append(recs, put(k, fmt.Sprintf("v%d", rng.Uint32())))
				}
			}
			spec := plainSpec(clock.Millis())
			spec.codec = int8(rng.IntN(5))
			spec.xerialSnap = rng.IntN(2) == 0
			if rng.IntN(3) == 0 {
				spec.pid = int64(1 + rng.IntN(3))
				spec.epoch, spec.seq = 0, seqs[spec.pid]
				seqs[spec.pid] += int32(len(recs))
			}
			info := mustAppendDurable(t, l, keyedBatch(t, spec, recs...))
			if spec.pid >= 0 {
				lastData[spec.pid] = info.LastOffset
			}
		}
	}
	appendRandom(40 + rng.IntN(40))
	c := NewCleaner(CleanerConfig{DedupeBufferBytes: 1 << 20, IOBufferBytes: 300 + rng.IntN(2000)})
	points := 0
	for round := range 3 {
		opts := CleanOptions{StableOffset: l.DurableOffset(), DeleteRetention: time.Minute, ProducerLastOffsets: maps.Clone(lastData)}
		problems, n := crashRound(t, seed, round, fsys, l, cfg, c, opts, rng)
		points += n
		if len(problems) > 0 {
			return problems, points
		}
		appendRandom(10 + rng.IntN(30))
		clock.Advance(time.Duration(rng.IntN(90)) * time.Second)
	}
	return nil, points
}

// groupRange is the offsets one segment group of a clean covers.
type groupRange struct{ base, next int64 }

func crashRound(t *testing.T, seed uint64, round int, fsys *MemFS, l *Log, cfg Config, c *Cleaner, opts CleanOptions, rng *rand.Rand) ([]string, int) {
	where := fmt.Sprintf("seed %d round %d", seed, round)
	before, _, err := readBackErr(l)
	if err != nil {
		return []string{fmt.Sprintf("%s: read before: %v", where, err)}, 0
	}
	// The reference: the same clean, uninterrupted, on a copy.
	rl, err := Open(fsys.CrashClone(CrashOptions{}), "/p", cfg)
	if err != nil {
		return []string{fmt.Sprintf("%s: open reference: %v", where, err)}, 0
	}
	segs, _, _ := rl.plan(opts.StableOffset, 0, cfg.Now())
	refStats, err := NewCleaner(c.cfg).Clean(context.Background(), rl, opts)
	if err != nil {
		rl.Close()
		return []string{fmt.Sprintf("%s: reference clean: %v", where, err)}, 0
	}
	after, _, err := readBackErr(rl)
	rl.Close()
	if err != nil {
		return []string{fmt.Sprintf("%s: read reference: %v", where, err)}, 0
	}
	var groups []groupRange
	for _, g := range groupSegments(segs, refStats.CleanedTo, cfg.SegmentBytes) {
		groups = append(groups, groupRange{g[0].base, g[len(g)-1].next})
	}

	var mu sync.Mutex // guards acked, appended, points
	acked, appended := map[int64]string{}, map[int64]string{}
	var points []cleanCrashPoint
	cloneRand := rand.New(rand.NewPCG(seed, uint64(round)))
	started, cleanDone := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fsys.SetSyncHook(func(ev SyncEvent) {
		if strings.HasSuffix(ev.Name, cleanedSuffix) {
			once.Do(func() { close(started) })
		}
		mu.Lock()
		defer mu.Unlock()
		points = append(points, cleanCrashPoint{event: ev, acked: maps.Clone(acked),
			fs: fsys.CrashClone(CrashOptions{Rand: cloneRand, TornTail: 0.3})})
	})
	// Writers append while the clean rewrites, once it has planned.
	var wg sync.WaitGroup
	for w := range 2 {
		var batches [][]byte
		for i := range 8 {
			batches = append(batches, keyedBatch(t, plainSpec(cfg.Now().UnixMilli()), put(fmt.Sprintf("live%d", w), fmt.Sprintf("w%d-%d-%d", w, round, i))))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-started:
			case <-cleanDone:
				return
			}
			for i, b := range batches {
				info, err := l.Append(b)
				if err != nil {
					t.Errorf("%s: append: %v", where, err)
					return
				}
				v := fmt.Sprintf("w%d-%d-%d", w, round, i)
				mu.Lock()
				appended[info.BaseOffset] = v
				mu.Unlock()
				if err := l.WaitDurable(context.Background(), info.LastOffset+1); err != nil {
					t.Errorf("%s: wait durable: %v", where, err)
					return
				}
				mu.Lock()
				acked[info.BaseOffset] = v
				mu.Unlock()
			}
		}()
	}
	stats, err := c.Clean(context.Background(), l, opts)
	close(cleanDone)
	wg.Wait()
	fsys.SetSyncHook(nil)
	var problems []string
	if err != nil {
		return []string{fmt.Sprintf("%s: clean: %v", where, err)}, 0
	}
	if stats.CleanedTo != refStats.CleanedTo || stats.GroupsSwapped != refStats.GroupsSwapped {
		problems = append(problems, fmt.Sprintf("%s: clean differs from its reference: %+v vs %+v", where, stats, refStats))
	}
	final, _, err := readBackErr(l)
	if err != nil {
		return append(problems, fmt.Sprintf("%s: read after: %v", where, err)), 0
	}
	for _, g := range groups {
		if got, want := inRange(final, g), inRange(after, g); !sameRecords(got, want) {
			problems = append(problems, fmt.Sprintf("%s: group %d..%d after the clean: %s, want %s", where, g.base, g.next, brief(got), brief(want)))
		}
	}
	for i, p := range points {
		problems = append(problems, checkCleanCrash(fmt.Sprintf("%s, crash point %d (%+v)", where, i, p.event), p, appended, cfg, before, after, groups)...)
		if len(problems) > 0 {
			break
		}
	}
	return problems, len(points)
}

// checkCleanCrash recovers one crash clone and checks it.
// appended holds every append of the round, made or not when the crash hit.
func checkCleanCrash(where string, p cleanCrashPoint, appended map[int64]string, cfg Config, before, after []storedRecord, groups []groupRange) []string {
	// `idem storage check` on the stopped broker's files must agree with
	// what a start makes of them: no damage below the recovery point. It
	// reads every batch, so one crash point in four is enough.
	if p.event.N%4 == 0 {
		if in, err := Inspect(p.fs, "/p", RecoveryPoints{}); err != nil || (in.Damage != nil && in.Damage.BelowRecoveryPoint) {
			return []string{fmt.Sprintf("%s: inspection before recovery: %v, damage %+v", where, err, in.Damage)}
		}
	}
	rl, err := Open(p.fs, "/p", cfg)
	if err != nil {
		return []string{fmt.Sprintf("%s: recovery failed: %v", where, err)}
	}
	got, _, err := readBackErr(rl)
	start := rl.StartOffset()
	rl.Close()
	if err != nil {
		return []string{fmt.Sprintf("%s: read after recovery: %v", where, err)}
	}
	var problems []string
	at := map[int64]storedRecord{}
	for _, r := range got {
		at[r.Offset] = r
	}
	for off, v := range p.acked {
		if at[off].Value != v {
			problems = append(problems, fmt.Sprintf("%s: acknowledged append at %d lost (got %q, want %q)", where, off, at[off].Value, v))
		}
	}
	covered := int64(0)
	for _, g := range groups {
		covered = g.next
		g.base = max(g.base, start)
		gotG := inRange(got, g)
		if !sameRecords(gotG, inRange(before, g)) && !sameRecords(gotG, inRange(after, g)) {
			problems = append(problems, fmt.Sprintf("%s: group %d..%d is neither as before nor as cleaned: %s\nbefore:  %s\ncleaned: %s",
				where, g.base, g.next, brief(gotG), brief(inRange(before, g)), brief(inRange(after, g))))
		}
	}
	end := int64(0)
	if len(before) > 0 {
		end = before[len(before)-1].Offset + 1
	}
	rest := groupRange{max(covered, start), end}
	if gotR, want := inRange(got, rest), inRange(before, rest); !sameRecords(gotR, want) {
		problems = append(problems, fmt.Sprintf("%s: records beyond the clean changed: %s, want %s", where, brief(gotR), brief(want)))
	}
	for _, r := range got {
		if r.Offset >= end && appended[r.Offset] != r.Value {
			problems = append(problems, fmt.Sprintf("%s: offset %d serves %q, never appended there", where, r.Offset, r.Value))
		}
	}
	// Recovery made its result durable: a power loss right after it
	// changes nothing.
	again, err := Open(p.fs.CrashClone(CrashOptions{}), "/p", cfg)
	if err != nil {
		return append(problems, fmt.Sprintf("%s: second recovery failed: %v", where, err))
	}
	got2, _, err := readBackErr(again)
	again.Close()
	if err != nil || !sameRecords(got, got2) {
		problems = append(problems, fmt.Sprintf("%s: second recovery differs (err %v): %d vs %d records", where, err, len(got2), len(got)))
	}
	return problems
}

func inRange(recs []storedRecord, g groupRange) []storedRecord {
	var out []storedRecord
	for _, r := range recs {
		if r.Offset >= g.base && r.Offset < g.next {
			out = append(out, r)
		}
	}
	return out
}

func sameRecords(a, b []storedRecord) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Offset != y.Offset || x.Key != y.Key || x.Value != y.Value || x.Tombstone != y.Tombstone || x.NoKey != y.NoKey || x.TS != y.TS {
			return false
		}
	}
	return true
}

// skipUnderRace skips a crash test under the race detector. One seed of
// the clean's crash test is about 1,900 recoveries, which the detector
// makes take over three minutes; CI runs every crash test in full without
// it (the README's test command) and races the cleaner's concurrency in the
// other clean tests, so the race run would add minutes and find nothing
// those do not.
func skipUnderRace(t *testing.T) {
	t.Helper()
	if raceDetector {
		t.Skip("crash test: runs in full without -race (see skipUnderRace)")
	}
}
