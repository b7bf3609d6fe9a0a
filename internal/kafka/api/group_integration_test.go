package api_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// consumed records every value each consumer saw.
type consumed struct {
	mu   sync.Mutex
	seen map[string]int
}

func (c *consumed) add(v string) {
	c.mu.Lock()
	c.seen[v]++
	c.mu.Unlock()
}

func (c *consumed) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// groupConsumer polls in the background until ctx ends, committing what it
// polled after each poll and before giving partitions up.
func groupConsumer(t *testing.T, ctx context.Context, b *brokertest.Broker, name string, out *consumed, assigned chan<- string) (*kgo.Client, <-chan struct{}) {
	t.Helper()
	var cl *kgo.Client
	commit := func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) {
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Logf("%s: commit on revoke: %v", name, err)
		}
	}
	cl = b.Client(t,
		kgo.ClientID(name),
		kgo.ConsumerGroup("g"),
		kgo.ConsumeTopics("events"),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(100*time.Millisecond),
		kgo.OnPartitionsRevoked(commit),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if assigned != nil {
				assigned <- fmt.Sprintf("%s:%v", name, m["events"])
			}
		}),
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) { out.add(string(r.Value)) })
			if err := cl.CommitUncommittedOffsets(context.Background()); err != nil && ctx.Err() == nil {
				t.Logf("%s: commit: %v", name, err)
			}
		}
	}()
	return cl, done
}

func produce(t *testing.T, cl *kgo.Client, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		r := &kgo.Record{Topic: "events", Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
}

// TestConsumerGroupWithFranzGo: two kgo group members share a topic through a
// rebalance, commit as they go, and after both leave and the broker restarts
// a new member resumes exactly where they stopped.
func TestConsumerGroupWithFranzGo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and real clients")
	}
	b := brokertest.Run(t, broker.WithTopics("events"), broker.WithProperty("num.partitions", "4"))
	prod := b.Client(t)
	produce(t, prod, 0, 100)

	seen := &consumed{seen: map[string]int{}}
	assigned := make(chan string, 16)
	ctxA, stopA := context.WithCancel(context.Background())
	clA, doneA := groupConsumer(t, ctxA, b, "a", seen, assigned)
	t.Logf("assigned %s", <-assigned)
	testkit.Eventually(t, 30*time.Second, "the first 100 records", func() bool { return seen.count() == 100 })

	// A second member joins: the group rebalances and both keep consuming.
	ctxB, stopB := context.WithCancel(context.Background())
	clB, doneB := groupConsumer(t, ctxB, b, "b", seen, assigned)
	testkit.Eventually(t, 30*time.Second, "member b to get partitions", func() bool {
		select {
		case s := <-assigned:
			t.Logf("assigned %s", s)
			return s[0] == 'b' && s != "b:[]" // cooperative-sticky: b gets partitions in a second rebalance
		default:
			return false
		}
	})
	adm := kadm.NewClient(prod)
	testkit.Eventually(t, 30*time.Second, "a Stable group of two", func() bool {
		dg, err := adm.DescribeGroups(context.Background(), "g")
		if err != nil {
			return false
		}
		d := dg["g"]
		return d.State == "Stable" && len(d.Members) == 2
	})
	produce(t, prod, 100, 200)
	testkit.Eventually(t, 30*time.Second, "all 200 records", func() bool { return seen.count() == 200 })
	testkit.Eventually(t, 30*time.Second, "committed offsets to cover all 200 records", func() bool {
		offs, err := adm.FetchOffsets(context.Background(), "g")
		if err != nil {
			return false
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
		return sum == 200
	})
	stopA()
	stopB()
	<-doneA
	<-doneB
	clA.Close() // leaves the group
	clB.Close()
	for v, n := range seen.seen {
		if n != 1 {
			t.Errorf("record %s consumed %d times", v, n)
		}
	}

	// The broker restarts; committed offsets are read back from disk.
	b.Restart(t)
	prod2 := b.Client(t)
	produce(t, prod2, 200, 250)
	resumed := &consumed{seen: map[string]int{}}
	ctxC, stopC := context.WithCancel(context.Background())
	defer stopC()
	_, doneC := groupConsumer(t, ctxC, b, "c", resumed, nil)
	testkit.Eventually(t, 30*time.Second, "the 50 records produced after the restart", func() bool { return resumed.count() >= 50 })
	time.Sleep(200 * time.Millisecond) // anything older would arrive with them
	stopC()
	<-doneC
	for i := 200; i < 250; i++ {
		if resumed.seen[fmt.Sprint(i)] != 1 {
			t.Errorf("record %d consumed %d times after the restart", i, resumed.seen[fmt.Sprint(i)])
		}
	}
	if resumed.count() != 50 {
		t.Errorf("consumer resumed with %d records, want exactly the 50 new ones", resumed.count())
	}
}

// TestStaticMemberRejoinsWithoutRebalance: a static member (kgo InstanceID)
// that restarts gets its partitions back without the other member noticing:
// no rebalance, so no revocation or new assignment for it (KIP-345).
func TestStaticMemberRejoinsWithoutRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and real clients")
	}
	b := brokertest.Run(t, broker.WithTopics("events"), broker.WithProperty("num.partitions", "4"))
	var mu sync.Mutex
	events := map[string][]string{}
	note := func(who, what string) {
		mu.Lock()
		events[who] = append(events[who], what)
		mu.Unlock()
	}
	member := func(instance string) *kgo.Client {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(b.Addr()),
			kgo.ConsumerGroup("static"),
			kgo.ConsumeTopics("events"),
			kgo.InstanceID(instance),
			kgo.SessionTimeout(10*time.Second),
			kgo.HeartbeatInterval(100*time.Millisecond),
			kgo.Balancers(kgo.RangeBalancer()),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				note(instance, fmt.Sprint("assigned ", m["events"]))
			}),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				note(instance, fmt.Sprint("revoked ", m["events"]))
			}),
		)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				fs := cl.PollFetches(context.Background())
				if fs.IsClientClosed() {
					return
				}
			}
		}()
		return cl
	}
	adm := kadm.NewClient(b.Client(t))
	stable := func() kadm.DescribedGroup {
		var d kadm.DescribedGroup
		testkit.Eventually(t, 30*time.Second, "a Stable group of two", func() bool {
			dg, err := adm.DescribeGroups(context.Background(), "static")
			d = dg["static"]
			return err == nil && d.State == "Stable" && len(d.Members) == 2
		})
		return d
	}
	a := member("ia")
	defer a.Close()
	bcl := member("ib")
	before := stable()
	// Let the follower catch up on the generation before it goes away.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	aEvents := len(events["ia"])
	ibEvents := len(events["ib"])
	ibAssigned := events["ib"][ibEvents-1]
	mu.Unlock()
	bcl.Close() // static members do not leave the group on close
	b2 := member("ib")
	defer b2.Close()
	testkit.Eventually(t, 30*time.Second, "the restarted member to get its partitions back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events["ib"]) >= ibEvents+2 // revoked on close, assigned again
	})
	after := stable()
	mu.Lock()
	defer mu.Unlock()
	if got := events["ia"][aEvents:]; len(got) != 0 {
		t.Errorf("member ia saw %v: the static rejoin caused a rebalance", got)
	}
	if ib := events["ib"]; ib[ibEvents+1] != ibAssigned {
		t.Errorf("member ib: %v, want %q back", ib, ibAssigned)
	}
	same := 0
	for _, m := range before.Members {
		for _, n := range after.Members {
			if m.MemberID == n.MemberID {
				same++
			}
		}
	}
	if same != 1 {
		t.Errorf("members before %v, after %v: want only ib's member id replaced", before.Members, after.Members)
	}
}

// TestGroupSurvivesBrokerRestart: two members consume while the broker
// restarts under them; they rejoin, nothing is lost, and the committed
// offsets end at the end of every partition.
func TestGroupSurvivesBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and real clients")
	}
	b := brokertest.Run(t, broker.WithTopics("events"), broker.WithProperty("num.partitions", "4"))
	seen := &consumed{seen: map[string]int{}}
	ctx, stop := context.WithCancel(context.Background())
	clA, doneA := groupConsumer(t, ctx, b, "a", seen, nil)
	clB, doneB := groupConsumer(t, ctx, b, "b", seen, nil)
	prod := b.Client(t, kgo.RecordRetries(100))
	produceRetrying := func(from, to int) {
		for i := from; i < to; i++ {
			r := &kgo.Record{Topic: "events", Value: []byte(fmt.Sprint(i))}
			for {
				err := prod.ProduceSync(context.Background(), r).FirstErr()
				if err == nil {
					break
				}
				t.Logf("produce %d: %v (retrying)", i, err)
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	produceRetrying(0, 100)
	testkit.Eventually(t, 30*time.Second, "the first 100 records", func() bool { return seen.count() >= 100 })
	b.Restart(t)
	produceRetrying(100, 200)
	testkit.Eventually(t, 30*time.Second, "all 200 records after the restart", func() bool { return seen.count() == 200 })
	adm := kadm.NewClient(prod)
	testkit.Eventually(t, 30*time.Second, "committed offsets to cover all 200 records", func() bool {
		offs, err := adm.FetchOffsets(context.Background(), "g")
		if err != nil {
			return false
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
		return sum == 200
	})
	stop()
	<-doneA
	<-doneB
	clA.Close()
	clB.Close()
}
