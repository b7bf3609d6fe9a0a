package interop

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// startBroker runs a broker for one test. Groups rebalance at once: the
// 3 s initial delay exists for fleets of consumers, not for tests.
func startBroker(t *testing.T, opts ...broker.Option) *brokertest.Broker {
	t.Helper()
	return brokertest.Run(t, append([]broker.Option{
		broker.WithProperty("group.initial.rebalance.delay.ms", "0"),
	}, opts...)...)
}

// requireTool returns the path of an external tool, or skips the test when
// it is missing, except in CI where a missing tool is a broken setup.
func requireTool(t *testing.T, path, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (install the Debian package %s): %v", path, pkg, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
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
	if _, err := adm.CreateTopic(testContext(t, 15*time.Second), partitions, 1, nil, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// values makes n distinct record values with a prefix.
func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

// sameSet fails unless got holds exactly want, each once.
func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if slices.Equal(g, w) {
		return
	}
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	var missing, dup []string
	for _, v := range want {
		if seen[v] == 0 {
			missing = append(missing, v)
		}
	}
	for v, n := range seen {
		if n > 1 {
			dup = append(dup, v)
		}
	}
	t.Fatalf("%s: got %d values, want %d; missing %d %v; duplicated %d %v",
		what, len(got), len(want), len(missing), head(missing), len(dup), head(dup))
}

func head(vs []string) []string {
	if len(vs) > 8 {
		return vs[:8]
	}
	return vs
}

// readAll consumes topic from the start with franz-go until n records
// arrived, to check what another client wrote.
func readAll(t *testing.T, b *brokertest.Broker, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := testContext(t, 30*time.Second)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s before timeout", len(out), n, topic)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

// committed returns the group's committed offset per partition of topic.
func committed(t *testing.T, b *brokertest.Broker, group, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	resp, err := adm.FetchOffsets(testContext(t, 15*time.Second), group)
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
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

// oneIdempotentProducer fails unless every record was written by one
// idempotent producer: its batches carry a producer id and epoch, which a
// non-idempotent client leaves at -1. This is what tells us that the client
// really negotiated InitProducerId and sequence numbers with the broker.
func oneIdempotentProducer(t *testing.T, recs []*kgo.Record) {
	t.Helper()
	ids := map[int64]bool{}
	for _, r := range recs {
		if r.ProducerID < 0 || r.ProducerEpoch < 0 {
			t.Fatalf("record %q at %d/%d has producer id %d epoch %d: not written idempotently",
				r.Value, r.Partition, r.Offset, r.ProducerID, r.ProducerEpoch)
		}
		ids[r.ProducerID] = true
	}
	if len(ids) != 1 {
		t.Fatalf("records carry %d producer ids, want the one producer's", len(ids))
	}
}
