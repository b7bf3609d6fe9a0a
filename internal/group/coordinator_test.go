package group

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/logstore"
)

func testConfig(fs logstore.FS) Config {
	cfg := DefaultConfig()
	cfg.FS, cfg.Dir, cfg.InitialRebalanceDelay = fs, "__consumer_offsets", 0
	return cfg
}

func mustOpen(t *testing.T, cfg Config) *Coordinator {
	t.Helper()
	c, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatalf("NewCoordinator: %v", err)
	}
	return c
}

func commit(t *testing.T, c *Coordinator, group string, offs map[TopicPartition]int64) {
	t.Helper()
	req := CommitRequest{Group: group, Generation: -1}
	for tp, o := range offs {
		req.Offsets = append(req.Offsets, OffsetCommit{Topic: tp.Topic, Partition: tp.Partition, Offset: o, LeaderEpoch: -1})
	}
	errs, err := c.CommitOffsets(context.Background(), req)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
}

func fetch(t *testing.T, c *Coordinator, group string) map[TopicPartition]int64 {
	t.Helper()
	offs, err := c.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	out := map[TopicPartition]int64{}
	for tp, o := range offs {
		out[tp] = o.Offset
	}
	return out
}

// TestOffsetsSurviveRestartOnDisk uses the real file system.
func TestOffsetsSurviveRestartOnDisk(t *testing.T) {
	cfg := testConfig(logstore.OSFS())
	cfg.Dir = t.TempDir()
	c := mustOpen(t, cfg)
	want := map[TopicPartition]int64{{"a", 0}: 10, {"a", 1}: 20, {"b", 0}: 30}
	commit(t, c, "g", want)
	commit(t, c, "g", map[TopicPartition]int64{{"a", 0}: 11})
	want[TopicPartition{"a", 0}] = 11
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = mustOpen(t, cfg)
	defer c.Close()
	if got := fetch(t, c, "g"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart got %v, want %v", got, want)
	}
}

// TestAcknowledgedCommitsSurvivePowerLoss commits from several goroutines
// and simulates a power loss at a random instant, many times: every commit
// that was acknowledged must be there after recovery, with the value of the
// last acknowledged commit or of a later (unacknowledged) one.
func TestAcknowledgedCommitsSurvivePowerLoss(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			fs := logstore.NewMemFS()
			cfg := testConfig(fs)
			cfg.CompactRecords = 50 // compact during the run too
			c := mustOpen(t, cfg)
			const workers = 4
			var mu sync.Mutex
			acked := map[TopicPartition]int64{}
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tp := TopicPartition{"t", int32(w)}
					for i := int64(1); ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						_, err := c.CommitOffsets(context.Background(), CommitRequest{Group: "g", Generation: -1,
							Offsets: []OffsetCommit{{Topic: tp.Topic, Partition: tp.Partition, Offset: i, LeaderEpoch: -1}}})
						if err != nil {
							return
						}
						mu.Lock()
						acked[tp] = i
						mu.Unlock()
					}
				}()
			}
			time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
			mu.Lock()
			crashed := fs.CrashClone(logstore.CrashOptions{Rand: rng, TornTail: 0.5})
			snapshot := map[TopicPartition]int64{}
			for tp, o := range acked {
				snapshot[tp] = o
			}
			mu.Unlock()
			close(stop)
			wg.Wait()
			c.Close()

			cfg.FS = crashed
			c2 := mustOpen(t, cfg)
			defer c2.Close()
			got := fetch(t, c2, "g")
			for tp, o := range snapshot {
				if got[tp] < o {
					t.Errorf("%v: acknowledged %d, recovered %d", tp, o, got[tp])
				}
			}
		})
	}
}

// TestCompaction checks that the offsets log is rewritten as a snapshot once
// it holds many more records than live state, and that replay still gives
// the latest offsets.
func TestCompaction(t *testing.T) {
	fs := logstore.NewMemFS()
	cfg := testConfig(fs)
	cfg.CompactRecords = 20
	cfg.SegmentBytes = 2048
	c := mustOpen(t, cfg)
	for i := range int64(500) {
		commit(t, c, "g", map[TopicPartition]int64{{"t", int32(i % 3)}: i})
	}
	commit(t, c, "h", map[TopicPartition]int64{{"t", 0}: 7})
	if _, err := c.DeleteOffsets(context.Background(), "g", []TopicPartition{{"t", 2}}); err != nil {
		t.Fatal(err)
	}
	c.tick() // compaction runs on the timer goroutine; make sure it ran
	records := c.log.Records()
	start := c.log.Start()
	if start == 0 || records > 40 {
		t.Fatalf("log not compacted: start %d, %d records since snapshot", start, records)
	}
	c.Close()
	c = mustOpen(t, cfg)
	defer c.Close()
	want := map[TopicPartition]int64{{"t", 0}: 498, {"t", 1}: 499}
	if got := fetch(t, c, "g"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("g after compaction and restart: got %v, want %v", got, want)
	}
	if got := fetch(t, c, "h"); got[TopicPartition{"t", 0}] != 7 {
		t.Fatalf("h after compaction: %v", got)
	}
}

// TestSyncErrorFailsCommit: a failed fsync poisons the offsets log and the
// commit is not acknowledged.
func TestSyncErrorFailsCommit(t *testing.T) {
	fs := logstore.NewMemFS()
	c := mustOpen(t, testConfig(fs))
	defer c.Close()
	commit(t, c, "g", map[TopicPartition]int64{{"t", 0}: 1})
	fs.SetSyncError(errors.New("disk on fire"))
	_, err := c.CommitOffsets(context.Background(), CommitRequest{Group: "g", Generation: -1,
		Offsets: []OffsetCommit{{Topic: "t", Partition: 0, Offset: 2, LeaderEpoch: -1}}})
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("commit after a failed fsync: %v, want ErrStorage", err)
	}
}

func consumerMeta(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = topics
	return m.AppendTo(nil)
}

// TestOffsetDeleteSubscribed: a live consumer group keeps the offsets of
// topics its members subscribe to.
func TestOffsetDeleteSubscribed(t *testing.T) {
	c := mustOpen(t, testConfig(logstore.NewMemFS()))
	defer c.Close()
	ctx := context.Background()
	commit(t, c, "g", map[TopicPartition]int64{{"sub", 0}: 1, {"other", 0}: 2})
	res, err := c.JoinGroup(ctx, JoinRequest{Group: "g", ClientID: "c", ProtocolType: "consumer",
		Protocols: []Protocol{{Name: "range", Metadata: consumerMeta("sub")}}, SessionTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SyncGroup(ctx, SyncRequest{Group: "g", MemberID: res.MemberID, Generation: res.Generation}); err != nil {
		t.Fatal(err)
	}
	errs, err := c.DeleteOffsets(ctx, "g", []TopicPartition{{"sub", 0}, {"other", 0}})
	if err != nil || !errors.Is(errs[0], ErrSubscribedToTopic) || errs[1] != nil {
		t.Fatalf("DeleteOffsets = %v, %v", errs, err)
	}
	if got := fetch(t, c, "g"); len(got) != 1 || got[TopicPartition{"sub", 0}] != 1 {
		t.Fatalf("offsets after delete: %v", got)
	}
	if errs := c.DeleteGroups(ctx, []string{"g"}); !errors.Is(errs[0], ErrNonEmptyGroup) {
		t.Fatalf("DeleteGroups of a live group: %v", errs)
	}
}

// TestRealTimers runs the timer goroutine with the real clock: a member that
// stops heartbeating is removed after its session timeout, and a JoinGroup
// waiting on the initial delay completes.
func TestRealTimers(t *testing.T) {
	cfg := testConfig(logstore.NewMemFS())
	cfg.InitialRebalanceDelay = 50 * time.Millisecond
	cfg.MinSessionTimeout = 10 * time.Millisecond
	c := mustOpen(t, cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	res, err := c.JoinGroup(ctx, JoinRequest{Group: "g", ClientID: "c", ProtocolType: "consumer",
		Protocols: []Protocol{{Name: "range"}}, SessionTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("join completed after %v, before the initial delay", d)
	}
	for c.DescribeGroup("g").State != Empty {
		if ctx.Err() != nil {
			t.Fatalf("member never expired: %+v", c.DescribeGroup("g"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: res.MemberID, Generation: res.Generation}); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("heartbeat after expiry: %v", err)
	}
}

// TestCloseAnswersWaiters: Close answers a blocked JoinGroup and joins the
// timer goroutine.
func TestCloseAnswersWaiters(t *testing.T) {
	cfg := testConfig(logstore.NewMemFS())
	cfg.InitialRebalanceDelay = time.Hour
	c := mustOpen(t, cfg)
	errc := make(chan error, 1)
	go func() {
		_, err := c.JoinGroup(context.Background(), JoinRequest{Group: "g", ClientID: "c", ProtocolType: "consumer",
			Protocols: []Protocol{{Name: "range"}}, SessionTimeout: 10 * time.Second})
		errc <- err
	}()
	for c.DescribeGroup("g").State != PreparingRebalance {
		time.Sleep(time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked join after Close: %v", err)
	}
	if _, err := c.CommitOffsets(context.Background(), CommitRequest{Group: "g", Generation: -1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("commit after Close: %v", err)
	}
}

// TestConcurrentGroup runs several members through real joins, syncs,
// heartbeats and commits at once (for -race).
func TestConcurrentGroup(t *testing.T) {
	cfg := testConfig(logstore.NewMemFS())
	cfg.InitialRebalanceDelay = 20 * time.Millisecond
	c := mustOpen(t, cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ""
			for round := 0; round < 20 && ctx.Err() == nil; {
				res, err := c.JoinGroup(ctx, JoinRequest{Group: "g", MemberID: id, ClientID: fmt.Sprint("c", w), ProtocolType: "consumer",
					Protocols: []Protocol{{Name: "range"}}, SessionTimeout: 6 * time.Second, RequireKnownMemberID: true})
				id = res.MemberID
				if err != nil {
					continue
				}
				var as map[string][]byte
				if res.LeaderID == id {
					as = map[string][]byte{}
					for _, m := range res.Members {
						as[m.MemberID] = []byte(m.MemberID)
					}
				}
				sres, err := c.SyncGroup(ctx, SyncRequest{Group: "g", MemberID: id, Generation: res.Generation, Assignments: as})
				if err != nil {
					continue
				}
				if string(sres.Assignment) != id {
					t.Errorf("member %s got assignment %q", id, sres.Assignment)
				}
				c.CommitOffsets(ctx, CommitRequest{Group: "g", MemberID: id, Generation: res.Generation,
					Offsets: []OffsetCommit{{Topic: "t", Partition: int32(w), Offset: int64(round), LeaderEpoch: -1}}})
				c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: id, Generation: res.Generation})
				c.DescribeGroup("g")
				c.ListGroups(nil)
				round++
				if round%5 == 0 {
					c.LeaveGroup("g", []LeaveMember{{MemberID: id}})
					id = ""
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("members did not finish their rounds")
	}
}

// TestDeleteTopicOffsets: offsets of a deleted topic disappear from every
// group, durably.
func TestDeleteTopicOffsets(t *testing.T) {
	fs := logstore.NewMemFS()
	cfg := testConfig(fs)
	c := mustOpen(t, cfg)
	commit(t, c, "g1", map[TopicPartition]int64{{"gone", 0}: 1, {"kept", 0}: 2})
	commit(t, c, "g2", map[TopicPartition]int64{{"gone", 3}: 4})
	if err := c.DeleteTopicOffsets(context.Background(), []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c = mustOpen(t, cfg)
	defer c.Close()
	if got := fetch(t, c, "g1"); len(got) != 1 || got[TopicPartition{"kept", 0}] != 2 {
		t.Fatalf("g1: %v", got)
	}
	if got := fetch(t, c, "g2"); len(got) != 0 {
		t.Fatalf("g2: %v", got)
	}
}

// TestExpireUnsubscribedTopics: a Stable consumer group keeps the offsets of
// the topics it subscribes to and loses the others after the retention time
// (KIP-496).
func TestExpireUnsubscribedTopics(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := testConfig(logstore.NewMemFS())
	cfg.Now = func() time.Time { return now }
	cfg.manualTick = true
	cfg.OffsetsRetention = time.Hour
	cfg.OffsetsRetentionCheckInterval = time.Minute
	c := mustOpen(t, cfg)
	defer c.Close()
	ctx := context.Background()
	commit(t, c, "g", map[TopicPartition]int64{{"sub", 0}: 1, {"old", 0}: 2})
	ch, res, err := c.joinStart(JoinRequest{Group: "g", ClientID: "c", ProtocolType: "consumer",
		Protocols: []Protocol{{Name: "range", Metadata: consumerMeta("sub")}}, SessionTimeout: 30 * time.Minute})
	if err != nil || ch == nil {
		t.Fatalf("join: %v %v", res, err)
	}
	res = (<-ch).res
	if _, err := c.SyncGroup(ctx, SyncRequest{Group: "g", MemberID: res.MemberID, Generation: res.Generation}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		now = now.Add(25 * time.Minute)
		if err := c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: res.MemberID, Generation: res.Generation}); err != nil {
			t.Fatal(err)
		}
		c.tick()
	}
	if got := fetch(t, c, "g"); len(got) != 1 || got[TopicPartition{"sub", 0}] != 1 {
		t.Fatalf("offsets after retention: %v, want only the subscribed topic", got)
	}
}

// TestCompactionKeepsPendingTxnOffsets: a snapshot keeps pending
// transactional offsets pending (a later marker still completes them) and
// keeps "the later commit wins" between pending and committed offsets.
func TestCompactionKeepsPendingTxnOffsets(t *testing.T) {
	fs := logstore.NewMemFS()
	cfg := testConfig(fs)
	cfg.CompactRecords = 20
	c := mustOpen(t, cfg)
	ctx := context.Background()
	txn := func(tp TopicPartition, off int64) {
		t.Helper()
		if _, err := c.TxnOffsetCommit(ctx, TxnCommitRequest{Group: "g", ProducerID: 5, Generation: -1,
			Offsets: []OffsetCommit{{Topic: tp.Topic, Partition: tp.Partition, Offset: off, LeaderEpoch: -1}}}); err != nil {
			t.Fatal(err)
		}
	}
	stale, fresh := TopicPartition{"t", 0}, TopicPartition{"t", 1}
	txn(stale, 100) // pending, then overtaken by an ordinary commit
	commit(t, c, "g", map[TopicPartition]int64{stale: 7})
	commit(t, c, "g", map[TopicPartition]int64{fresh: 1})
	txn(fresh, 200) // pending and newer than the committed 1
	for i := range int64(100) {
		commit(t, c, "other", map[TopicPartition]int64{{"x", 0}: i})
	}
	c.tick()
	if c.log.Start() == 0 {
		t.Fatal("log not compacted")
	}
	c.Close()
	c = mustOpen(t, cfg)
	defer c.Close()
	if got := fetch(t, c, "g"); got[stale] != 7 || got[fresh] != 1 {
		t.Fatalf("before the marker: %v", got)
	}
	if err := c.CompleteTxnOffsets(ctx, "g", 5, 0, true); err != nil {
		t.Fatal(err)
	}
	if got := fetch(t, c, "g"); got[stale] != 7 || got[fresh] != 200 {
		t.Fatalf("after the marker: %v, want t/0=7 (the later ordinary commit) and t/1=200", got)
	}
}
