package interop

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// franz-go is idempotent with acks=all by default and negotiates the newest
// versions the broker advertises, so it exercises the modern end of every
// API: InitProducerId, Produce v9+, Fetch v12+, the classic group protocol.
func TestFranzGoIdempotentProduceGroupConsumeAndResumeFromCommittedOffsets(t *testing.T) {
	b := startBroker(t)
	const topic, group = "franz-orders", "franz-group"
	brokerkit.CreateTopic(t, b, topic, 3)
	all := brokerkit.Values("franz", 300)

	// Produce: every record acknowledged, with an offset, by an idempotent
	// producer (the default; asserted so a changed default cannot hide it).
	// An idempotent franz-go producer keeps up to 5 requests in flight per
	// broker on its own (the option is only for non-idempotent producers).
	producer := b.Client(t, kgo.DefaultProduceTopic(topic))
	var records []*kgo.Record
	for i, v := range all {
		records = append(records, &kgo.Record{Key: []byte{byte(i % 7)}, Value: []byte(v)})
	}
	if err := producer.ProduceSync(testkit.Context(t, 30*time.Second), records...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if id, epoch, err := producer.ProducerID(testkit.Context(t, 10*time.Second)); err != nil || id < 0 || epoch < 0 {
		t.Fatalf("producer id %d epoch %d (%v): produce was not idempotent", id, epoch, err)
	}

	oneIdempotentProducer(t, readAll(t, b, topic, len(all)))

	// First member consumes about half, commits exactly what it processed,
	// and leaves.
	first := consumeWithGroup(t, b, topic, group, len(all)/2)

	// The commit is durable: it survives a restart of the broker.
	b.Restart(t)

	// A second member of the same group resumes after the commit: together
	// the two saw every record exactly once.
	rest := consumeWithGroup(t, b, topic, group, len(all)-len(first))
	brokerkit.SameSet(t, "values consumed by the two members", append(first, rest...), all)

	ends := brokerkit.EndOffsets(t, b, topic)
	if got := brokerkit.Committed(t, b, group, topic); len(got) != 3 {
		t.Fatalf("committed offsets %v, want one per partition (ends %v)", got, ends)
	} else {
		for p, end := range ends {
			if got[p] != end {
				t.Errorf("partition %d: committed %d, want the end offset %d", p, got[p], end)
			}
		}
	}
}

// consumeWithGroup joins group, consumes n records, commits the offsets of
// exactly those records, leaves the group, and returns their values.
func consumeWithGroup(t *testing.T, b *brokertest.Broker, topic, group string, n int) []string {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr()),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testkit.Context(t, 45*time.Second)
	var got []string
	var last []*kgo.Record
	for len(got) < n {
		fs := cl.PollRecords(ctx, n-len(got))
		if ctx.Err() != nil {
			t.Fatalf("group %s consumed %d of %d records before timeout", group, len(got), n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got = append(got, string(r.Value))
			last = append(last, r)
		})
	}
	if err := cl.CommitRecords(ctx, last...); err != nil {
		t.Fatalf("commit: %v", err)
	}
	cl.LeaveGroup()
	return got
}
