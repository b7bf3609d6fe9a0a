package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// TestFranzGoKIP848GroupSharesRevokesAndSurvivesARestart runs two franz-go
// consumers with kgo.ServerSideBalancer() (the KIP-848 consumer protocol,
// ConsumerGroupHeartbeat) over a real broker: the coordinator splits the
// partitions between them, never giving one partition to both; a broker
// restart changes nothing (same members, epochs and assignments, no
// rebalance); when one leaves, the other takes its partitions; together they
// consume everything exactly once and commit the end offsets.
func TestFranzGoKIP848GroupSharesRevokesAndSurvivesARestart(t *testing.T) {
	for _, balancer := range []struct {
		name     string
		balancer kgo.GroupBalancer
		assignor string
	}{
		{"uniform", kgo.CooperativeStickyBalancer(), "uniform"},
		{"range", kgo.RangeBalancer(), "range"},
	} {
		t.Run(balancer.name, func(t *testing.T) {
			b := startBroker(t, broker.WithProperty("group.consumer.heartbeat.interval.ms", "300"))
			topic, group := "kip848-"+balancer.name, "kip848-group-"+balancer.name
			brokerkit.CreateTopic(t, b, topic, 6)
			produceValues(t, b, topic, brokerkit.Values("a", 300))

			seen := newSeenValues()
			ca := newKIP848Consumer(t, b, topic, group, "ca", balancer.balancer, seen)
			seen.waitFor(t, 100, "the first member to consume")
			cb := newKIP848Consumer(t, b, topic, group, "cb", balancer.balancer, seen)

			// Both members end up with partitions, disjoint, at one epoch.
			before := waitStable(t, b, group, 2)
			if before.AssignorName != balancer.assignor {
				t.Errorf("assignor %q, want %q", before.AssignorName, balancer.assignor)
			}
			seen.waitFor(t, 300, "the first 300 values")

			// A restart: the group comes back as it was, members keep
			// their ids and epochs, nobody rejoins.
			b.Restart(t)
			after := describeConsumerGroup(t, b, group)
			if got, want := memberEpochs(after), memberEpochs(before); !maps.Equal(got, want) {
				t.Errorf("after the restart the members and epochs are %v, want %v", got, want)
			}
			produceValues(t, b, topic, brokerkit.Values("b", 300))
			seen.waitFor(t, 600, "the values produced after the restart")
			if got := memberEpochs(describeConsumerGroup(t, b, group)); !maps.Equal(got, memberEpochs(before)) {
				t.Errorf("the restart made the group rebalance: %v, before %v", got, memberEpochs(before))
			}

			// One leaves; the other takes over its partitions.
			cb.close()
			remaining := waitStable(t, b, group, 1)
			if n := assignedCount(remaining.Members[0]); n != 6 {
				t.Errorf("the remaining member has %d partitions, want all 6", n)
			}
			produceValues(t, b, topic, brokerkit.Values("c", 300))
			seen.waitFor(t, 900, "the values produced after the leave")
			ca.close()

			want := append(append(brokerkit.Values("a", 300), brokerkit.Values("b", 300)...), brokerkit.Values("c", 300)...)
			seen.check(t, want)
			ends := brokerkit.EndOffsets(t, b, topic)
			committed := brokerkit.Committed(t, b, group, topic)
			for p, end := range ends {
				if committed[p] != end {
					t.Errorf("partition %d: committed %d, want the end offset %d", p, committed[p], end)
				}
			}
			if d := describeConsumerGroup(t, b, group); d.State != "Empty" || len(d.Members) != 0 {
				t.Errorf("after both left: state %s with %d members, want Empty", d.State, len(d.Members))
			}
		})
	}
}

// TestFranzGoKIP848RegexSubscriptionFollowsNewTopics subscribes by regular
// expression, which the coordinator resolves: a topic created later that
// matches is assigned and consumed without the client asking.
func TestFranzGoKIP848RegexSubscriptionFollowsNewTopics(t *testing.T) {
	b := startBroker(t, broker.WithProperty("group.consumer.heartbeat.interval.ms", "300"))
	brokerkit.CreateTopic(t, b, "rx-orders", 2)
	brokerkit.CreateTopic(t, b, "rx-other", 1)
	produceValues(t, b, "rx-orders", brokerkit.Values("o", 20))
	produceValues(t, b, "rx-other", brokerkit.Values("x", 20))
	seen := newSeenValues()
	cl := b.Client(t,
		kgo.ServerSideBalancer(), kgo.ConsumerGroup("rx-group"), kgo.ConsumeRegex(), kgo.ConsumeTopics("rx-ord.*"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(200*time.Millisecond),
	)
	go pollInto(testkit.Context(t, 60*time.Second), cl, seen)
	seen.waitFor(t, 20, "rx-orders")
	brokerkit.CreateTopic(t, b, "rx-orders-eu", 3)
	produceValues(t, b, "rx-orders-eu", brokerkit.Values("eu", 30))
	seen.waitFor(t, 50, "rx-orders-eu, created after the member joined")
	seen.check(t, append(brokerkit.Values("o", 20), brokerkit.Values("eu", 30)...))
	d := describeConsumerGroup(t, b, "rx-group")
	if len(d.Members) != 1 || d.Members[0].SubscribedTopicRegex == nil {
		t.Fatalf("describe: %+v", d)
	}
	names := map[string]bool{}
	for _, tp := range d.Members[0].Assignment.TopicPartitions {
		names[tp.Topic] = true
	}
	if !names["rx-orders"] || !names["rx-orders-eu"] || names["rx-other"] {
		t.Errorf("assigned topics %v, want rx-orders and rx-orders-eu only", slices.Sorted(maps.Keys(names)))
	}
}

// TestFranzGoKIP848FallsBackWhenDisabled turns the consumer protocol off
// (group.coordinator.rebalance.protocols=classic): franz-go then gets
// UNSUPPORTED_VERSION on its first heartbeat and uses the classic protocol.
func TestFranzGoKIP848FallsBackWhenDisabled(t *testing.T) {
	b := startBroker(t, broker.WithProperty("group.coordinator.rebalance.protocols", "classic"))
	brokerkit.CreateTopic(t, b, "fb", 2)
	produceValues(t, b, "fb", brokerkit.Values("f", 10))
	seen := newSeenValues()
	cl := b.Client(t, kgo.ServerSideBalancer(), kgo.ConsumerGroup("fb-group"), kgo.ConsumeTopics("fb"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	go pollInto(testkit.Context(t, 60*time.Second), cl, seen)
	seen.waitFor(t, 10, "the values")
	groups, err := kadm.NewClient(b.Client(t)).ListGroups(testkit.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := groups["fb-group"]; !ok || g.ProtocolType != "consumer" {
		t.Fatalf("groups %v", groups)
	}
	// DescribeGroups describes classic groups only (a KIP-848 group is
	// GROUP_ID_NOT_FOUND there).
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{"fb-group"}
	resp, err := req.RequestWith(testkit.Context(t, 10*time.Second), b.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	if g := resp.Groups[0]; g.ErrorCode != 0 || g.State != "Stable" || len(g.Members) != 1 {
		t.Fatalf("the group is not a classic one with its member: %+v", g)
	}
}

// kip848Consumer is one group member consuming into a seenValues, with its
// offsets marked as processed and committed by franz-go (also when
// partitions are revoked, before the next member gets them).
type kip848Consumer struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func newKIP848Consumer(t *testing.T, b *brokertest.Broker, topic, group, name string, balancer kgo.GroupBalancer, seen *seenValues) *kip848Consumer {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr()), kgo.ClientID(name),
		kgo.ServerSideBalancer(), kgo.Balancers(balancer),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(), kgo.AutoCommitInterval(200*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &kip848Consumer{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		pollInto(ctx, cl, seen)
	}()
	t.Cleanup(c.close)
	return c
}

// close stops polling and leaves the group (committing what was marked).
func (c *kip848Consumer) close() {
	c.cancel()
	<-c.done
	c.cl.Close()
}

// pollInto polls until ctx ends, recording every value and marking it for
// commit once recorded.
func pollInto(ctx context.Context, cl *kgo.Client, seen *seenValues) {
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		if fs.IsClientClosed() {
			return
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen.add(string(r.Value))
			cl.MarkCommitRecords(r)
		})
	}
}

// seenValues counts how often each value was consumed.
type seenValues struct {
	mu     sync.Mutex
	counts map[string]int
}

func newSeenValues() *seenValues { return &seenValues{counts: map[string]int{}} }

func (s *seenValues) add(v string) {
	s.mu.Lock()
	s.counts[v]++
	s.mu.Unlock()
}

func (s *seenValues) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts)
}

func (s *seenValues) waitFor(t *testing.T, n int, what string) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, fmt.Sprintf("%s (%d values consumed in all)", what, n), func() bool { return s.distinct() >= n })
}

// check wants exactly want, each value once.
func (s *seenValues) check(t *testing.T, want []string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range want {
		if s.counts[v] != 1 {
			t.Errorf("value %s consumed %d times, want once", v, s.counts[v])
		}
	}
	if len(s.counts) != len(want) {
		t.Errorf("%d distinct values consumed, want %d", len(s.counts), len(want))
	}
}

func produceValues(t *testing.T, b *brokertest.Broker, topic string, values []string) {
	t.Helper()
	p := b.Client(t, kgo.DefaultProduceTopic(topic))
	var rs []*kgo.Record
	for _, v := range values {
		rs = append(rs, &kgo.Record{Value: []byte(v)})
	}
	if err := p.ProduceSync(testkit.Context(t, 30*time.Second), rs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

func describeConsumerGroup(t *testing.T, b *brokertest.Broker, group string) kmsg.ConsumerGroupDescribeResponseGroup {
	t.Helper()
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(testkit.Context(t, 10*time.Second), b.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Groups[0]
}

// waitStable waits until the group is Stable with n members and checks
// that no partition is assigned twice.
func waitStable(t *testing.T, b *brokertest.Broker, group string, n int) kmsg.ConsumerGroupDescribeResponseGroup {
	t.Helper()
	var d kmsg.ConsumerGroupDescribeResponseGroup
	testkit.Eventually(t, 60*time.Second, fmt.Sprintf("group %s Stable with %d members, each with partitions", group, n), func() bool {
		d = describeConsumerGroup(t, b, group)
		if d.ErrorCode != 0 || d.State != "Stable" || len(d.Members) != n {
			return false
		}
		for _, m := range d.Members {
			if assignedCount(m) == 0 {
				return false
			}
		}
		return true
	})
	owners := map[string]string{}
	for _, m := range d.Members {
		for _, tp := range m.Assignment.TopicPartitions {
			for _, p := range tp.Partitions {
				key := fmt.Sprintf("%s/%d", tp.Topic, p)
				if o, ok := owners[key]; ok {
					t.Errorf("%s is assigned to %s and %s", key, o, m.MemberID)
				}
				owners[key] = m.MemberID
			}
		}
	}
	return d
}

func assignedCount(m kmsg.ConsumerGroupDescribeResponseGroupMember) int {
	n := 0
	for _, tp := range m.Assignment.TopicPartitions {
		n += len(tp.Partitions)
	}
	return n
}

func memberEpochs(d kmsg.ConsumerGroupDescribeResponseGroup) map[string]int32 {
	out := map[string]int32{}
	for _, m := range d.Members {
		out[m.MemberID] = m.MemberEpoch
	}
	return out
}

// TestLibrdkafkaKIP848Consumer consumes with librdkafka's KIP-848 consumer
// (group.protocol=consumer, GA in librdkafka 2.12.0) through
// python3-confluent-kafka. The librdkafka installed here (Debian's 2.0.2)
// predates the property: the test says so and skips; with 2.12+ it runs.
func TestLibrdkafkaKIP848Consumer(t *testing.T) {
	py := requireConfluentKafka(t)
	out, err := exec.Command(py, "-c", "import confluent_kafka; print(confluent_kafka.libversion()[1])").Output()
	if err != nil {
		t.Fatal(err)
	}
	var lib int
	fmt.Sscan(string(out), &lib)
	if lib < 0x020c0000 {
		t.Skipf("librdkafka %#x predates group.protocol=consumer (KIP-848, librdkafka 2.12.0): nothing to test", lib)
	}
	b := startBroker(t)
	const topic, group, n = "rdk-kip848", "rdk-kip848-group", 100
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/confluent_kip848.py", b.Addr(), topic, group, fmt.Sprint(n))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("confluent_kip848.py: %v\nstderr:\n%s", err, stderr.String())
	}
	var res struct{ Produced, Consumed []string }
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("script output is not JSON: %v\n%s", err, stdout.String())
	}
	brokerkit.SameSet(t, "values the KIP-848 consumer read", res.Consumed, res.Produced)
	if d := describeConsumerGroup(t, b, group); d.ErrorCode != 0 {
		t.Errorf("the group is not a KIP-848 group: %+v", d)
	}
}
