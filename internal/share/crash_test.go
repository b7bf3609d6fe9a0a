package share

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
)

// crashWorld is what the live run had done when a crash point was taken.
type crashWorld struct {
	event         logstore.SyncEvent
	fs            *logstore.MemFS
	acceptTried   map[int64]bool // an ACCEPT was sent (maybe not durable)
	acceptAcked   map[int64]bool // an ACCEPT was answered: it must survive
	rejectAcked   map[int64]bool // a REJECT was answered: exactly one dead letter
	limitArchived map[int64]bool // released or expired at the limit (maybe not durable)
}

// crash-test topology: one source topic, a dead-letter topic, one group.
const (
	crashParts   = 2
	crashRecords = 24 // per partition
	crashLimit   = 3
)

func crashOffset(p int32, o int64) int64 { return int64(p)*1000 + o }

// TestCrashAtEverySyncPoint runs share consumers that accept, release and
// reject records (and let locks expire) while the dead-letter writer and
// compaction run, all on a MemFS; at every sync point, before and after it,
// it takes a power-loss clone (un-synced tails kept at random, some torn).
// Each clone must recover, finish its dead letters and let a fresh consumer
// drain the group; then:
//   - no record whose ACCEPT was answered is delivered again;
//   - every record whose REJECT was answered is in the dead-letter topic
//     exactly once; no record is there twice, ever;
//   - no record is both dead-lettered and accepted after the crash;
//   - no record is lost: each ends accepted (before or after the crash) or
//     dead-lettered.
func TestCrashAtEverySyncPoint(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	points := 0
	for seed := range uint64(seeds) {
		points += runShareCrashSeed(t, seed)
		if t.Failed() {
			t.Fatalf("seed %d failed; rerun with this seed to reproduce", seed)
		}
	}
	if points < 50 {
		t.Fatalf("only %d crash points: the test covers too little", points)
	}
	t.Logf("%d seeds, %d crash points recovered and checked", seeds, points)
}

func crashBroker() *config.Config {
	conf := config.New()
	conf.Set("group.share.min.record.lock.duration.ms", "1000")
	// The dead-letter partition forgets its idempotent producers at once,
	// so only the share coordinator's own scan can keep a dead letter from
	// being written twice after a crash (the partition's duplicate check
	// is a second guard in production, not something to rely on here).
	conf.Set("producer.id.expiration.ms", "1")
	return conf
}

func runShareCrashSeed(t *testing.T, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, 0x5a))
	fs := logstore.NewMemFS()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	st := newStorage(t, fs, crashBroker(), now)
	if _, err := st.tm.CreateTopic("src", crashParts, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.tm.CreateTopic("dlq.src", 1, map[string]string{"errors.deadletterqueue.group.enable": "true"}); err != nil {
		t.Fatal(err)
	}
	for p := range int32(crashParts) {
		st.produce("src", p, "r", crashRecords)
	}
	cfg := st.config(true)
	cfg.CompactRecords, cfg.SegmentBytes = 40, 2048
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	set := func(k, v string) ConfigOp { return ConfigOp{Name: k, Value: &v} }
	if err := c.AlterConfigs(ctx, ResourceGroup, "g", []ConfigOp{
		set("share.auto.offset.reset", "earliest"), set("share.record.lock.duration.ms", "1000"),
		set("share.delivery.count.limit", strconv.Itoa(crashLimit)), set("errors.deadletterqueue.topic.name", "dlq.src"),
	}, true, false); err != nil {
		t.Fatal(err)
	}
	srcID, _ := st.topics().ByName("src")

	var histMu sync.Mutex
	w := crashWorld{acceptTried: map[int64]bool{}, acceptAcked: map[int64]bool{}, rejectAcked: map[int64]bool{}, limitArchived: map[int64]bool{}}
	var crashes []crashWorld
	cloneRand := rand.New(rand.NewPCG(seed, 0xc2))
	fs.SetSyncHook(func(ev logstore.SyncEvent) {
		histMu.Lock()
		defer histMu.Unlock()
		crashes = append(crashes, crashWorld{event: ev, fs: fs.CrashClone(logstore.CrashOptions{Rand: cloneRand, TornTail: 0.3}),
			acceptTried: maps.Clone(w.acceptTried), acceptAcked: maps.Clone(w.acceptAcked),
			rejectAcked: maps.Clone(w.rejectAcked), limitArchived: maps.Clone(w.limitArchived)})
	})

	// Consumers.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			name := fmt.Sprintf("m%d", i)
			if _, err := c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: name, Subscribed: []string{"src"}}); err != nil {
				t.Error(err)
				return
			}
			conn := uint64(i + 1)
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ss, err := c.OpenSession(cctx, "g", name, conn, 0)
			if err != nil {
				t.Error(err)
				return
			}
			epoch := int32(1)
			var tps []TopicPartition
			for p := range int32(crashParts) {
				tps = append(tps, TopicPartition{srcID.ID, p})
			}
			c.UpdateSession(ss, tps, nil)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.OpenSession(cctx, "g", name, conn, epoch); err != nil {
					t.Error(err)
					return
				}
				epoch++
				res, err := c.Fetch(ctx, ss, FetchOptions{MaxRecords: 1 + r.IntN(6), Strict: true, MaxBytes: 1 << 20})
				if err != nil {
					t.Error(err)
					return
				}
				for _, pr := range res.Partitions {
					for _, rg := range pr.Acquired {
						for o := rg.First; o <= rg.Last; o++ {
							c.maybeHeartbeat(name)
							typ := []int8{AckAccept, AckAccept, AckRelease, AckReject, -1}[r.IntN(5)]
							if typ < 0 {
								continue // let the lock expire
							}
							key := crashOffset(pr.Partition, o)
							histMu.Lock()
							if typ == AckAccept {
								w.acceptTried[key] = true
							}
							if typ == AckRelease && rg.DeliveryCount >= crashLimit {
								w.limitArchived[key] = true
							}
							histMu.Unlock()
							if _, err := c.OpenSession(cctx, "g", name, conn, epoch); err != nil {
								t.Error(err)
								return
							}
							epoch++
							pos, err := c.Acknowledge(ss, TopicPartition{pr.TopicID, pr.Partition}, []AckBatch{{First: o, Last: o, Types: []int8{typ}}}, false)
							if err != nil {
								continue // the lock expired meanwhile
							}
							if err := c.WaitDurable(ctx, pos); err != nil {
								t.Error(err)
								return
							}
							histMu.Lock()
							switch typ {
							case AckAccept:
								w.acceptAcked[key] = true
							case AckReject:
								w.rejectAcked[key] = true
							}
							histMu.Unlock()
						}
					}
				}
			}
		}()
	}
	// The timers (fake clock), the dead-letter writer and compaction.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			clock.Add(int64(150 * time.Millisecond))
			c.tick()
			c.runDLQ()
			time.Sleep(200 * time.Microsecond)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		offs, _ := c.DescribeOffsets("g", nil)
		done := len(offs) == crashParts
		for _, o := range offs {
			done = done && o.StartOffset == crashRecords
		}
		if done && c.pendingDLQCount() == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	c.Close()
	st.close()
	fs.SetSyncHook(nil)
	if t.Failed() {
		return 0
	}
	for i, cw := range crashes {
		checkShareCrash(t, fmt.Sprintf("seed %d, crash point %d (%+v)", seed, i, cw.event), cw)
		if t.Failed() {
			return i
		}
	}
	// And the end state after a clean close.
	checkShareCrash(t, fmt.Sprintf("seed %d, clean close", seed), crashWorld{fs: fs.CrashClone(logstore.CrashOptions{}),
		acceptTried: w.acceptTried, acceptAcked: w.acceptAcked, rejectAcked: w.rejectAcked, limitArchived: w.limitArchived})
	_ = rng
	return len(crashes)
}

// maybeHeartbeat keeps a member alive across the fake clock's jumps.
func (c *Coordinator) maybeHeartbeat(member string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.groups["g"]; g != nil {
		if m := g.members[member]; m != nil {
			m.deadline = c.now().Add(time.Hour)
		}
	}
}

func (c *Coordinator) pendingDLQCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.dlq.entries)
}

// checkShareCrash recovers a crash clone, drains the group and checks the
// outcome of every record.
func checkShareCrash(t *testing.T, what string, cw crashWorld) {
	t.Helper()
	// A clock that moves a second per reading: the partitions' producer
	// states expire (producer.id.expiration.ms=1) between recovery and the
	// dead-letter writer's first append.
	var tick atomic.Int64
	now := func() time.Time { return time.Date(2027, 1, 1, 0, 0, int(tick.Add(1)), 0, time.UTC) }
	st := newStorage(t, cw.fs, crashBroker(), now)
	defer st.close()
	c, err := New(st.config(true))
	if err != nil {
		t.Errorf("%s: recovery failed: %v", what, err)
		return
	}
	defer c.Close()
	ctx := context.Background()
	srcID, _ := st.topics().ByName("src")
	accepted := map[int64]bool{}
	if _, err := c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: "drain", Subscribed: []string{"src"}}); err != nil {
		// The group's creation may not have survived: nothing was
		// acknowledged then either.
		t.Errorf("%s: rejoin: %v", what, err)
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ss, err := c.OpenSession(cctx, "g", "drain", 99, 0)
	if err != nil {
		t.Errorf("%s: session: %v", what, err)
		return
	}
	var tps []TopicPartition
	for p := range int32(crashParts) {
		tps = append(tps, TopicPartition{srcID.ID, p})
	}
	c.UpdateSession(ss, tps, nil)
	for range 100 {
		res, err := c.Fetch(ctx, ss, FetchOptions{MaxRecords: 100, MaxBytes: 1 << 20})
		if err != nil {
			t.Errorf("%s: drain fetch: %v", what, err)
			return
		}
		if !res.hasData() {
			break
		}
		for _, pr := range res.Partitions {
			if pr.Err != nil {
				t.Errorf("%s: drain: %v", what, pr.Err)
				return
			}
			for _, rg := range pr.Acquired {
				for o := rg.First; o <= rg.Last; o++ {
					key := crashOffset(pr.Partition, o)
					if cw.acceptAcked[key] {
						t.Errorf("%s: record %d delivered again after its ACCEPT was answered", what, key)
					}
					accepted[key] = true
				}
				pos, err := c.Acknowledge(ss, TopicPartition{pr.TopicID, pr.Partition}, []AckBatch{{First: rg.First, Last: rg.Last, Types: []int8{AckAccept}}}, false)
				if err == nil {
					err = c.WaitDurable(ctx, pos)
				}
				if err != nil {
					t.Errorf("%s: drain ack: %v", what, err)
					return
				}
			}
		}
	}
	// Records at the delivery limit are archived (and dead-lettered) when
	// the drain comes to them.
	for range 5 {
		c.runDLQ()
	}
	if n := c.pendingDLQCount(); n > 0 {
		t.Errorf("%s: %d dead letters still pending after recovery", what, n)
	}
	// The dead-letter topic.
	dlq := map[int64]int{}
	p, err := st.topics().Partition("dlq.src", 0)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	for o := p.StartOffset(); o < p.HighWatermark(); o++ {
		_, _, hs, err := c.sourceRecord("dlq.src", 0, o)
		if err != nil {
			t.Errorf("%s: dlq record %d: %v", what, o, err)
			continue
		}
		var part, off int64 = -1, -1
		for _, h := range hs {
			switch string(h[0]) {
			case "__dlq.errors.partition":
				part, _ = strconv.ParseInt(string(h[1]), 10, 64)
			case "__dlq.errors.offset":
				off, _ = strconv.ParseInt(string(h[1]), 10, 64)
			}
		}
		dlq[crashOffset(int32(part), off)]++
	}
	for key, n := range dlq {
		if n > 1 {
			t.Errorf("%s: record %d is in the dead-letter topic %d times", what, key, n)
		}
		if accepted[key] {
			t.Errorf("%s: record %d was dead-lettered and then delivered and accepted", what, key)
		}
	}
	for key := range cw.rejectAcked {
		if dlq[key] != 1 {
			t.Errorf("%s: record %d was rejected (answered) but is in the dead-letter topic %d times", what, key, dlq[key])
		}
	}
	for p := range int64(crashParts) {
		for o := range int64(crashRecords) {
			key := p*1000 + o
			if !accepted[key] && !cw.acceptTried[key] && dlq[key] == 0 {
				offs, _ := c.DescribeOffsets("g", nil)
				t.Errorf("%s: record %d lost: neither accepted nor dead-lettered (offsets %+v, rejectAcked %v, limit %v)", what, key, offs, cw.rejectAcked[key], cw.limitArchived[key])
			}
		}
	}
}
