package txn

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
)

// unavailable skips the test on a developer machine and fails it in CI,
// where a missing client is a broken setup, never a pass.
func unavailable(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// requireTool returns the path of an external program, or calls unavailable.
func requireTool(t *testing.T, path, install string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		unavailable(t, fmt.Sprintf("%s not found (%s): %v", path, install, err))
	}
	return p
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createTopic(t *testing.T, b *brokertest.Broker, topic string, partitions int32) {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	resp, err := adm.CreateTopic(testContext(t, 15*time.Second), partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

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
	if err := cl.ProduceSync(testContext(t, 15*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("seed %s/%d: %v", topic, partition, err)
	}
}

// values makes n distinct values with a prefix.
func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
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
	ctx := testContext(t, 20*time.Second)
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

// sameSet fails unless got holds exactly want, each value once.
func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if slices.Equal(g, w) {
		return
	}
	count := map[string]int{}
	for _, v := range got {
		count[v]++
	}
	wanted := map[string]bool{}
	var missing, extra, dup []string
	for _, v := range want {
		wanted[v] = true
		if count[v] == 0 {
			missing = append(missing, v)
		}
	}
	for v, n := range count {
		if !wanted[v] {
			extra = append(extra, v)
		} else if n > 1 {
			dup = append(dup, v)
		}
	}
	slices.Sort(extra)
	slices.Sort(dup)
	t.Fatalf("%s: got %d values, want %d; missing %d %v; unexpected %d %v; duplicated %d %v",
		what, len(got), len(want), len(missing), head(missing), len(extra), head(extra), len(dup), head(dup))
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

func head(vs []string) []string {
	if len(vs) > 8 {
		return vs[:8]
	}
	return vs
}

// committed returns the group's committed offset per partition of topic,
// as franz-go's admin client reads it (OffsetFetch with RequireStable).
func committed(t *testing.T, b *brokertest.Broker, group, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	resp, err := adm.FetchOffsets(testContext(t, 15*time.Second), group)
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic != topic {
			return
		}
		if o.Err != nil {
			t.Fatalf("fetch offsets of %s: %s/%d: %v", group, o.Topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.At
	})
	return out
}

// endOffsets returns the high watermark per partition of topic.
func endOffsets(t *testing.T, b *brokertest.Broker, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	ends, err := adm.ListEndOffsets(testContext(t, 15*time.Second), topic)
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}
