package api_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// shareBroker starts a broker whose share locks may be as short as a
// second, so that expiry tests run quickly.
func shareBroker(t *testing.T, opts ...broker.Option) *brokertest.Broker {
	t.Helper()
	opts = append([]broker.Option{
		broker.WithProperty("group.share.min.record.lock.duration.ms", "1000"),
		broker.WithProperty("errors.deadletterqueue.auto.create.topics.enable", "true"),
	}, opts...)
	return brokertest.Run(t, opts...)
}

// setGroupConfigs sets share-group configs with IncrementalAlterConfigs on
// the GROUP resource, as kgo's own test helper does.
func setGroupConfigs(t *testing.T, cl *kgo.Client, group string, kvs ...string) {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	for i := 0; i < len(kvs); i += 2 {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = kvs[i], kmsg.StringPtr(kvs[i+1])
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Resources {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("IncrementalAlterConfigs(%s): %v (%s)", group, err, deref(r.ErrorMessage))
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func produceN(t *testing.T, cl *kgo.Client, topic string, partition int32, n int) {
	t.Helper()
	for i := range n {
		r := &kgo.Record{Topic: topic, Partition: partition, Key: []byte(strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i))}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func createTopic(t *testing.T, adm *kadm.Client, name string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(context.Background(), partitions, 1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

// shareConsumer is a kgo share consumer of one group and topic.
func shareConsumer(t *testing.T, b *brokertest.Broker, group, topic string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return b.Client(t, append([]kgo.Opt{kgo.ShareGroup(group), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(200 * time.Millisecond)}, opts...)...)
}

// pollUntil polls until want records were seen or the deadline, calling fn
// for each record.
func pollUntil(t *testing.T, cl *kgo.Client, d time.Duration, done func() bool, fn func(*kgo.Record)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatal("timed out polling")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				t.Fatalf("poll: %v", e.Err)
			}
		}
		fs.EachRecord(fn)
	}
}

// TestShareConsumerAcks: accept, release (redelivered with delivery count
// 2), reject (dead-lettered with KIP-1191's headers) and renew, through
// franz-go's share consumer.
func TestShareConsumerAcks(t *testing.T) {
	b := shareBroker(t)
	cl := b.Client(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "jobs", 1, nil)
	setGroupConfigs(t, cl, "workers", "share.auto.offset.reset", "earliest", "errors.deadletterqueue.topic.name", "dlq.jobs")
	produceN(t, cl, "jobs", 0, 10)

	c := shareConsumer(t, b, "workers", "jobs")
	var mu sync.Mutex
	delivered := map[string][]int32{}
	accepted := map[string]bool{}
	pollUntil(t, c, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(accepted) == 9 }, func(r *kgo.Record) {
		mu.Lock()
		defer mu.Unlock()
		k := string(r.Key)
		delivered[k] = append(delivered[k], r.DeliveryCount())
		switch {
		case k == "1" && r.DeliveryCount() == 1:
			r.Ack(kgo.AckRelease)
		case k == "3":
			r.Ack(kgo.AckReject)
		case k == "5" && r.DeliveryCount() == 1:
			r.Ack(kgo.AckRenew)
			r.Ack(kgo.AckAccept) // a terminal status overrides the renew
			accepted[k] = true
		default:
			r.Ack(kgo.AckAccept)
			accepted[k] = true
		}
	})
	if err := c.FlushAcks(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := delivered["1"]; len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("released record delivered with counts %v, want [1 2]", got)
	}
	if got := delivered["3"]; len(got) != 1 {
		t.Errorf("rejected record delivered %d times", len(got))
	}
	// The rejected record reaches the dead-letter topic (auto-created).
	dl := b.Client(t, kgo.ConsumeTopics("dlq.jobs"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var dead *kgo.Record
	pollUntil(t, dl, 20*time.Second, func() bool { return dead != nil }, func(r *kgo.Record) { dead = r })
	want := map[string]string{"__dlq.errors.topic": "jobs", "__dlq.errors.partition": "0", "__dlq.errors.offset": "3",
		"__dlq.errors.group": "workers", "__dlq.errors.delivery.count": "1", "__dlq.errors.message": "rejected by the consumer"}
	got := map[string]string{}
	for _, h := range dead.Headers {
		got[h.Key] = string(h.Value)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("dead letter header %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if dead.Value != nil {
		t.Errorf("dead letter carries the value %q without copy.record.enable", dead.Value)
	}
	// Nothing is left: the group's start offset is past every record.
	offs, err := adm.DescribeShareGroupOffsets(context.Background(), "workers")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs["workers"].Offsets.Lookup("jobs", 0); !ok || o.StartOffset != 10 || o.Lag != 0 {
		t.Errorf("offsets %+v, want start 10 lag 0", o)
	}
}

// TestShareImplicitAckAndClose: records not acked explicitly are accepted
// by the next poll; acks made just before Close are sent by Close.
func TestShareImplicitAckAndClose(t *testing.T) {
	b := shareBroker(t)
	cl := b.Client(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "q", 1, nil)
	setGroupConfigs(t, cl, "g", "share.auto.offset.reset", "earliest")
	produceN(t, cl, "q", 0, 30)

	c := shareConsumer(t, b, "g", "q", kgo.ShareMaxRecords(10), kgo.ShareMaxRecordsStrict())
	seen := 0
	pollUntil(t, c, 20*time.Second, func() bool { return seen >= 20 }, func(*kgo.Record) { seen++ }) // implicit accepts
	last := 0
	pollUntil(t, c, 20*time.Second, func() bool { return seen+last >= 30 }, func(r *kgo.Record) {
		r.Ack(kgo.AckAccept)
		last++
	})
	c.Close()

	c2 := shareConsumer(t, b, "g", "q")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n := len(c2.PollFetches(ctx).Records()); n != 0 {
		t.Errorf("%d records delivered again after they were accepted", n)
	}
	offs, err := adm.DescribeShareGroupOffsets(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := offs["g"].Offsets.Lookup("q", 0); o.StartOffset != 30 {
		t.Errorf("start offset %d, want 30", o.StartOffset)
	}
}

// TestShareLockExpiryRedelivery: a member that holds records without
// acknowledging them loses them when the lock expires; another member gets
// them with delivery count 2 within the lock duration plus 200 ms.
func TestShareLockExpiryRedelivery(t *testing.T) {
	b := shareBroker(t)
	cl := b.Client(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "slow", 1, nil)
	setGroupConfigs(t, cl, "g", "share.auto.offset.reset", "earliest", "share.record.lock.duration.ms", "1000")
	produceN(t, cl, "slow", 0, 5)

	// The hog is a bare client: it joins, acquires everything with one
	// ShareFetch and then neither acknowledges nor fetches again (kgo's own
	// consumer would keep fetching in the background and re-acquire).
	hog := b.Client(t)
	ctx := context.Background()
	hb := kmsg.NewPtrShareGroupHeartbeatRequest()
	hb.GroupID, hb.MemberID, hb.MemberEpoch, hb.SubscribedTopicNames = "g", "hog", 0, []string{"slow"}
	if resp, err := hb.RequestWith(ctx, hog); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("hog join: %v %v", resp, err)
	}
	md, err := adm.Metadata(ctx, "slow")
	if err != nil {
		t.Fatal(err)
	}
	sf := kmsg.NewPtrShareFetchRequest()
	sf.GroupID, sf.MemberID, sf.MaxRecords, sf.BatchSize, sf.MaxBytes = kmsg.StringPtr("g"), kmsg.StringPtr("hog"), 100, 100, 1<<20
	ft := kmsg.NewShareFetchRequestTopic()
	ft.TopicID = md.Topics["slow"].ID
	ft.Partitions = []kmsg.ShareFetchRequestTopicPartition{{Partition: 0}}
	sf.Topics = append(sf.Topics, ft)
	sresp, err := sf.RequestWith(ctx, hog.Broker(1))
	if err != nil || sresp.ErrorCode != 0 || len(sresp.Topics) != 1 || len(sresp.Topics[0].Partitions[0].AcquiredRecords) != 1 {
		t.Fatalf("hog fetch: %+v %v", sresp, err)
	}
	if ar := sresp.Topics[0].Partitions[0].AcquiredRecords[0]; ar.FirstOffset != 0 || ar.LastOffset != 4 || ar.DeliveryCount != 1 {
		t.Fatalf("hog acquired %+v", ar)
	}
	acquired := time.Now()
	if sresp.AcquisitionLockTimeoutMillis != 1000 {
		t.Errorf("AcquisitionLockTimeoutMillis %d, want the group's 1000", sresp.AcquisitionLockTimeoutMillis)
	}
	// The hog never acks and never polls again.
	other := shareConsumer(t, b, "g", "slow")
	var again []*kgo.Record
	pollUntil(t, other, 20*time.Second, func() bool { return len(again) >= 5 }, func(r *kgo.Record) {
		again = append(again, r)
		r.Ack(kgo.AckAccept)
	})
	elapsed := time.Since(acquired)
	for _, r := range again {
		if r.DeliveryCount() != 2 {
			t.Errorf("record %s redelivered with delivery count %d", r.Key, r.DeliveryCount())
		}
	}
	if elapsed > 1000*time.Millisecond+200*time.Millisecond {
		t.Errorf("redelivered %v after acquisition, want about 1s", elapsed)
	}
	t.Logf("redelivered %v after acquisition with a 1 s lock", elapsed)
	if err := other.FlushAcks(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestShareDeliveryLimitDeadLetters: a record released at the group's
// delivery count limit (a group-level override, which kfake ignores) is
// archived and copied, key and value too, to the dead-letter topic.
func TestShareDeliveryLimitDeadLetters(t *testing.T) {
	b := shareBroker(t)
	cl := b.Client(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "poison", 1, nil)
	createTopic(t, adm, "dlq.poison", 1, map[string]*string{"errors.deadletterqueue.group.enable": kmsg.StringPtr("true")})
	setGroupConfigs(t, cl, "g", "share.auto.offset.reset", "earliest", "share.delivery.count.limit", "3",
		"errors.deadletterqueue.topic.name", "dlq.poison", "errors.deadletterqueue.copy.record.enable", "true")
	produceN(t, cl, "poison", 0, 1)

	c := shareConsumer(t, b, "g", "poison")
	var counts []int32
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		fs := c.PollFetches(pctx)
		pcancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			counts = append(counts, r.DeliveryCount())
			r.Ack(kgo.AckRelease)
			n++
		})
		if n == 0 && len(counts) > 0 {
			break // archived: nothing comes back any more
		}
		c.FlushAcks(ctx)
	}
	if fmt.Sprint(counts) != "[1 2 3]" {
		t.Errorf("delivery counts %v, want [1 2 3] (limit 3)", counts)
	}
	dl := b.Client(t, kgo.ConsumeTopics("dlq.poison"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var dead *kgo.Record
	pollUntil(t, dl, 20*time.Second, func() bool { return dead != nil }, func(r *kgo.Record) { dead = r })
	hs := map[string]string{}
	for _, h := range dead.Headers {
		hs[h.Key] = string(h.Value)
	}
	if string(dead.Key) != "0" || string(dead.Value) != "v0" || hs["__dlq.errors.delivery.count"] != "3" || hs["__dlq.errors.message"] != "delivery count limit reached" {
		t.Errorf("dead letter key %q value %q headers %v", dead.Key, dead.Value, hs)
	}
}

// TestShareMembersShareOnePartition: three consumers of a one-partition
// topic each get records, and every record is accepted exactly once.
func TestShareMembersShareOnePartition(t *testing.T) {
	b := shareBroker(t)
	cl := b.Client(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "one", 1, nil)
	setGroupConfigs(t, cl, "g", "share.auto.offset.reset", "earliest")
	const n = 600
	var mu sync.Mutex
	seen := map[string]int{}
	per := map[int]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 3 {
		c := shareConsumer(t, b, "g", "one", kgo.ShareMaxRecords(20), kgo.ShareMaxRecordsStrict())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				fs := c.PollFetches(ctx)
				fs.EachRecord(func(r *kgo.Record) {
					mu.Lock()
					seen[string(r.Key)]++
					per[i]++
					mu.Unlock()
					time.Sleep(time.Millisecond) // slow consumers, so all three get work
					r.Ack(kgo.AckAccept)
				})
				mu.Lock()
				done := len(seen) == n
				mu.Unlock()
				if done {
					c.FlushAcks(context.Background())
					cancel()
				}
			}
		}()
	}
	produceN(t, cl, "one", 0, n)
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d distinct records of %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("record %s delivered %d times", k, c)
		}
	}
	for i := range 3 {
		if per[i] == 0 {
			t.Errorf("member %d got no records: %v", i, per)
		}
	}
	d, err := adm.DescribeShareGroups(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if g := d["g"]; g.Err != nil || len(g.Members) != 3 {
		t.Errorf("describe: %+v", g)
	}
}

// TestShareAdmin: ListGroups by type, the offsets admin APIs and
// DeleteGroups through kadm.
func TestShareAdmin(t *testing.T) {
	b := shareBroker(t)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	createTopic(t, adm, "t", 2, nil)
	produceN(t, cl, "t", 0, 20)
	if _, err := adm.AlterShareGroupOffsets(ctx, "g", kadm.Offsets{"t": {0: {Topic: "t", Partition: 0, At: 8}}}); err != nil {
		t.Fatal(err)
	}
	offs, err := adm.DescribeShareGroupOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs["g"].Offsets.Lookup("t", 0); !ok || o.StartOffset != 8 || o.Lag != 12 {
		t.Errorf("after alter: %+v", o)
	}
	listed, err := adm.ListGroupsByType(ctx, []string{"share"})
	if err != nil || len(listed) != 1 || listed["g"].ProtocolType != "share" {
		t.Errorf("listed share groups %+v, %v", listed, err)
	}
	if classic, err := adm.ListGroupsByType(ctx, []string{"classic"}); err != nil || len(classic) != 0 {
		t.Errorf("listed classic groups %+v, %v", classic, err)
	}
	// A live member blocks offset changes and deletion.
	c := shareConsumer(t, b, "g", "t")
	var got int
	pollUntil(t, c, 20*time.Second, func() bool { return got > 0 }, func(r *kgo.Record) {
		got++
		if r.Offset < 8 {
			t.Errorf("offset %d delivered below the altered start 8", r.Offset)
		}
	})
	if resp, err := adm.DeleteGroups(ctx, "g"); err != nil || !errors.Is(resp["g"].Err, kerr.NonEmptyGroup) {
		t.Errorf("delete with a member: %v %v", resp, err)
	}
	c.Close()
	if resp, err := adm.DeleteShareGroupOffsets(ctx, "g", "t"); err != nil || resp["t"] != nil {
		t.Errorf("delete offsets: %v %v", resp, err)
	}
	if resp, err := adm.DeleteGroups(ctx, "g"); err != nil || resp["g"].Err != nil {
		t.Errorf("delete: %v %v", resp, err)
	}
	if listed, _ := adm.ListGroupsByType(ctx, []string{"share"}); len(listed) != 0 {
		t.Errorf("still listed after delete: %v", listed)
	}
}
