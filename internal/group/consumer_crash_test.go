package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
)

// consumerAcked is what a KIP-848 member was last answered: a power loss
// may not take it back.
type consumerAcked struct {
	epoch int32
	owned Assignment
	left  bool
}

// TestConsumerGroupsSurvivePowerLossAtEverySyncPoint runs members through
// joins, revocations, commits, leaves and rejoins, with compaction due
// often, and takes a power-loss clone of the offsets log just before and
// just after every sync. Every clone must replay; no partition may belong
// to two members; every member answered before the crash must be there and
// go on at the epoch and with the partitions it was last answered (the
// coordinator may be one heartbeat ahead, which the previous-epoch rule
// accepts); every acknowledged commit must be there.
func TestConsumerGroupsSurvivePowerLossAtEverySyncPoint(t *testing.T) {
	fs := logstore.NewMemFS()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := testConfig(fs)
	cfg.CompactRecords = 8
	cfg.manualTick = true
	cfg.Now = func() time.Time { return now }
	c := mustOpen(t, cfg)
	topics := NewTopics([]TopicInfo{{Name: "t", ID: topicID("t"), Partitions: 6}, {Name: "u", ID: topicID("u"), Partitions: 3}})

	type point struct {
		fs        *logstore.MemFS
		acked     map[string]consumerAcked
		committed map[TopicPartition]int64
		what      string
		inflight  *ConsumerHeartbeat // the heartbeat being written, if any
	}
	var points []point
	acked := map[string]consumerAcked{}
	committed := map[TopicPartition]int64{}
	step := ""
	var inflight *ConsumerHeartbeat
	compactions := 0
	snapshot := func(when string) {
		a := map[string]consumerAcked{}
		for k, v := range acked {
			a[k] = v
		}
		cm := map[TopicPartition]int64{}
		for k, v := range committed {
			cm[k] = v
		}
		points = append(points, point{fs.CrashClone(logstore.CrashOptions{}), a, cm, step + " " + when, inflight})
	}
	fs.SetSyncHook(func(ev logstore.SyncEvent) {
		if ev.Done {
			snapshot("after sync")
		} else {
			snapshot("before sync")
		}
	})

	ctx := context.Background()
	// compact runs the timer work (compaction, when due) between steps, once
	// what the step answered is recorded.
	compact := func() {
		step = "compaction"
		start := c.log.Start()
		c.tick()
		if c.log.Start() > start {
			compactions++
		}
	}
	hb := func(name string, epoch int32, subscribe bool) {
		t.Helper()
		step = fmt.Sprintf("%s heartbeat at %d", name, epoch)
		a := acked[name]
		req := ConsumerHeartbeat{Group: "g", MemberID: name, MemberEpoch: epoch, RebalanceTimeout: 30 * time.Second,
			Owned: a.owned, OwnedSent: true}
		if epoch == 0 {
			req.Owned = Assignment{}
		}
		if subscribe {
			req.SubscribedTopics = []string{"t", "u"}
		}
		inflight = &req
		res, err := c.ConsumerGroupHeartbeat(ctx, req, topics)
		inflight = nil
		defer compact()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if epoch < 0 {
			acked[name] = consumerAcked{left: true}
			return
		}
		a.epoch = res.MemberEpoch
		if res.Assignment != nil {
			a.owned = res.Assignment
		}
		acked[name] = a
	}
	commitAt := func(name string, tp TopicPartition, offset int64) {
		t.Helper()
		step = fmt.Sprintf("%s commits %v=%d", name, tp, offset)
		errs, err := c.CommitOffsets(ctx, CommitRequest{Group: "g", MemberID: name, Generation: acked[name].epoch,
			KnowsMemberEpochs: true, Offsets: []OffsetCommit{{Topic: tp.Topic, Partition: tp.Partition, Offset: offset, LeaderEpoch: -1}}})
		if err == nil {
			err = errors.Join(errs...)
		}
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		committed[tp] = offset
		compact()
	}
	// a alone, then b and c join and a revokes; commits along the way;
	// b leaves and rejoins; a fenced member rejoins with its id.
	hb("a", 0, true)
	commitAt("a", TopicPartition{"t", 0}, 10)
	hb("b", 0, true)
	hb("a", acked["a"].epoch, true)
	hb("a", acked["a"].epoch, true)
	hb("b", acked["b"].epoch, true)
	hb("c", 0, true)
	for range 3 {
		for _, m := range []string{"a", "b", "c"} {
			hb(m, acked[m].epoch, true)
		}
	}
	commitAt("b", TopicPartition{"t", 5}, 7)
	hb("b", -1, false)
	for range 2 {
		hb("a", acked["a"].epoch, true)
		hb("c", acked["c"].epoch, true)
	}
	hb("b", 0, true)
	hb("a", 0, true) // a rejoin with its own id
	for range 2 {
		for _, m := range []string{"a", "b", "c"} {
			hb(m, acked[m].epoch, true)
		}
	}
	commitAt("c", TopicPartition{"u", 1}, 3)
	fs.SetSyncHook(nil)
	c.Close()
	if len(points) < 20 || compactions == 0 {
		t.Fatalf("only %d sync points and %d compactions", len(points), compactions)
	}

	for _, p := range points {
		rcfg := cfg
		rcfg.FS = p.fs
		rc, err := NewCoordinator(rcfg)
		if err != nil {
			t.Fatalf("%s: reopen: %v", p.what, err)
		}
		rc.mu.Lock()
		owners := map[topicPartition]string{}
		if g := rc.groups["g"]; g != nil && g.consumer != nil {
			for _, m := range g.consumer.sortedMembers() {
				m.assigned.union(m.revoking).each(func(tp topicPartition) {
					if o, ok := owners[tp]; ok {
						t.Errorf("%s: partition %v belongs to %s and %s", p.what, tp, o, m.id)
					}
					owners[tp] = m.id
				})
			}
		}
		rc.mu.Unlock()
		got, err := rc.FetchOffsets(ctx, "g")
		if err != nil {
			t.Fatal(err)
		}
		for tp, o := range p.committed {
			if got[tp].Offset < o {
				t.Errorf("%s: commit %v=%d acknowledged, recovered %d", p.what, tp, o, got[tp].Offset)
			}
		}
		for name, a := range p.acked {
			if a.left || (p.inflight != nil && p.inflight.MemberID == name) {
				continue
			}
			_, err := rc.ConsumerGroupHeartbeat(ctx, ConsumerHeartbeat{Group: "g", MemberID: name, MemberEpoch: a.epoch,
				RebalanceTimeout: -1, Owned: a.owned, OwnedSent: true}, topics)
			if err != nil {
				t.Errorf("%s: %s, answered epoch %d with %d partitions, cannot go on: %v", p.what, name, a.epoch, a.owned.count(), err)
			}
		}
		// The member whose answer was lost sends its request again: it
		// must be served (a leave that took effect finds the member gone,
		// which clients take as done).
		if req := p.inflight; req != nil {
			_, err := rc.ConsumerGroupHeartbeat(ctx, *req, topics)
			if err != nil && !(req.MemberEpoch < 0 && errors.Is(err, ErrUnknownMember)) {
				t.Errorf("%s: the retry of %s's heartbeat at %d fails: %v", p.what, req.MemberID, req.MemberEpoch, err)
			}
		}
		rc.Close()
	}
}

// TestConsumerGroupConcurrentChurn has members heartbeat, leave and rejoin
// from several goroutines at once (run it with -race), each reporting what
// it was last told it owns, as clients do. At every moment no partition may
// be held by two members in the coordinator's books, nor be in two members'
// answered assignments at once (a member stops consuming before it leaves).
func TestConsumerGroupConcurrentChurn(t *testing.T) {
	cfg := testConfig(logstore.NewMemFS())
	cfg.manualTick = true
	c := mustOpen(t, cfg)
	defer c.Close()
	topics := NewTopics([]TopicInfo{{Name: "t", ID: topicID("t"), Partitions: 12}})
	ctx := context.Background()
	const members, rounds = 5, 200
	var mu sync.Mutex
	answered := map[string]Assignment{} // what each member was last told it owns
	check := func() {
		// The answers together never give a partition to two members.
		seen := map[topicPartition]string{}
		for m, a := range answered {
			a.each(func(tp topicPartition) {
				if o, ok := seen[tp]; ok {
					t.Errorf("%v answered to %s and %s", tp, o, m)
				}
				seen[tp] = m
			})
		}
	}
	var wg sync.WaitGroup
	for i := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("m%d", i)
			epoch := int32(0)
			owned := Assignment{}
			for r := range rounds {
				req := ConsumerHeartbeat{Group: "g", MemberID: name, MemberEpoch: epoch, RebalanceTimeout: time.Minute,
					SubscribedTopics: []string{"t"}, Owned: owned, OwnedSent: true}
				if epoch == 0 {
					req.Owned = Assignment{}
				}
				leave := r%37 == 36
				if leave {
					// A member stops consuming before it leaves.
					req = ConsumerHeartbeat{Group: "g", MemberID: name, MemberEpoch: -1}
					mu.Lock()
					delete(answered, name)
					mu.Unlock()
				}
				res, err := c.ConsumerGroupHeartbeat(ctx, req, topics)
				mu.Lock()
				switch {
				case err != nil:
					t.Errorf("%s round %d: %v", name, r, err)
				case leave:
					delete(answered, name)
					epoch, owned = 0, Assignment{}
				default:
					epoch = res.MemberEpoch
					if res.Assignment != nil {
						owned = res.Assignment
						answered[name] = owned
					}
				}
				check()
				mu.Unlock()
				c.mu.Lock()
				checkOwners(t, c.groups["g"])
				c.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// checkOwners checks the coordinator's own books: each partition is held
// (assigned or being revoked) by at most one member, and the owner map says
// exactly that.
func checkOwners(t *testing.T, g *group) {
	t.Helper()
	held := map[topicPartition]string{}
	for _, m := range g.consumer.members {
		m.assigned.union(m.revoking).each(func(tp topicPartition) {
			if o, ok := held[tp]; ok {
				t.Errorf("%v held by %s and %s", tp, o, m.id)
			}
			held[tp] = m.id
		})
	}
	if len(held) != len(g.consumer.owners) {
		t.Errorf("owners map has %d partitions, members hold %d", len(g.consumer.owners), len(held))
	}
	for tp, m := range held {
		if g.consumer.owners[tp] != m {
			t.Errorf("owners map says %v is %s's, %s holds it", tp, g.consumer.owners[tp], m)
		}
	}
}
