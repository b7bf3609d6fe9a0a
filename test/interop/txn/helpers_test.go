package txn

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// seed writes values to the given partition of topic, in order, with a
// plain (non-transactional) franz-go producer, uncompressed (kafkajs has no
// snappy codec of its own).
func seed(t *testing.T, b *brokertest.Broker, topic string, partition int32, values []string) {
	t.Helper()
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: partition, Value: []byte(v)})
	}
	if err := cl.ProduceSync(testkit.Context(t, 15*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("seed %s/%d: %v", topic, partition, err)
	}
}

// readCommitted consumes topic from the start with a read_committed franz-go
// consumer until it has received n records. The producers in these tests
// always end each partition with a committed transaction, so a consumer
// that leaked aborted records would reach n before it read every committed
// one, and the comparison of the values shows it.
func readCommitted(t *testing.T, b *brokertest.Broker, topic string, n int) []*kgo.Record {
	t.Helper()
	return read(t, b, topic, kgo.ReadCommitted(), func(recs []*kgo.Record) bool { return len(recs) >= n })
}

// readUncommitted consumes topic from the start with read_uncommitted
// (aborted records included) until it has received n records.
func readUncommitted(t *testing.T, b *brokertest.Broker, topic string, n int) []*kgo.Record {
	t.Helper()
	return read(t, b, topic, kgo.ReadUncommitted(), func(recs []*kgo.Record) bool { return len(recs) >= n })
}

func read(t *testing.T, b *brokertest.Broker, topic string, iso kgo.IsolationLevel, done func([]*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	cl := b.Client(t,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	defer cl.Close()
	ctx := testkit.Context(t, 20*time.Second)
	var out []*kgo.Record
	for !done(out) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("franz-go read %d records of %s before timeout: %v", len(out), topic, valuesOf(out))
		}
		fs.EachError(func(topic string, p int32, err error) { t.Errorf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func valuesOf(recs []*kgo.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	return out
}

// byPartition returns the values of recs per partition, in offset order.
func byPartition(recs []*kgo.Record) map[int32][]string {
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b *kgo.Record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	out := map[int32][]string{}
	for _, r := range recs {
		out[r.Partition] = append(out[r.Partition], string(r.Value))
	}
	return out
}

// oneTransactionalProducer fails unless every record was written in a
// transaction by one producer id, which is what shows that the client really
// ran InitProducerId with its transactional id and wrote transactional
// batches (a client that silently fell back to plain produce would not).
func oneTransactionalProducer(t *testing.T, what string, recs []*kgo.Record) int64 {
	t.Helper()
	ids := map[int64]bool{}
	var id int64 = -1
	for _, r := range recs {
		if !r.Attrs.IsTransactional() || r.ProducerID < 0 {
			t.Fatalf("%s: record %q at %d/%d is not transactional (producer id %d, epoch %d)",
				what, r.Value, r.Partition, r.Offset, r.ProducerID, r.ProducerEpoch)
		}
		ids[r.ProducerID] = true
		id = r.ProducerID
	}
	if len(ids) != 1 {
		t.Fatalf("%s: records carry %d producer ids, want one", what, len(ids))
	}
	return id
}

// subtract returns got less one occurrence of each value of sub, failing if
// got lacks one.
func subtract(t *testing.T, got, sub []string) []string {
	t.Helper()
	count := map[string]int{}
	for _, v := range got {
		count[v]++
	}
	for _, v := range sub {
		if count[v] == 0 {
			t.Fatalf("%q is missing from %v", v, got)
		}
		count[v]--
	}
	var out []string
	for _, v := range got {
		if count[v] > 0 {
			out = append(out, v)
			count[v]--
		}
	}
	return out
}

// noneOf fails if got holds any value with one of the prefixes.
func noneOf(t *testing.T, what string, got []string, prefixes ...string) {
	t.Helper()
	for _, v := range got {
		for _, p := range prefixes {
			if strings.HasPrefix(v, p) {
				t.Fatalf("%s: read %q, a value written in an aborted transaction", what, v)
			}
		}
	}
}
