package brokerkit

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// adminTimeout bounds each admin request of these helpers.
const adminTimeout = 15 * time.Second

// CreateTopic creates topic with the given number of partitions on b, and
// fails the test if the broker refuses.
func CreateTopic(t testing.TB, b *brokertest.Broker, topic string, partitions int32) {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	resp, err := adm.CreateTopic(testkit.Context(t, adminTimeout), partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// Values makes n distinct record values with a prefix: prefix-0000, ….
func Values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

// SameSet fails the test unless got holds exactly the values of want, each
// once, and then says which are missing, unexpected and duplicated.
func SameSet(t testing.TB, what string, got, want []string) {
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
		what, len(got), len(want), len(missing), Head(missing), len(extra), Head(extra), len(dup), Head(dup))
}

// Head returns the first few of vs, to keep a failure message readable.
func Head(vs []string) []string {
	if len(vs) > 8 {
		return vs[:8]
	}
	return vs
}

// Committed returns the group's committed offset per partition of topic, as
// franz-go's admin client reads it (OffsetFetch with RequireStable). An
// error for any partition of topic fails the test.
func Committed(t testing.TB, b *brokertest.Broker, group, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	resp, err := adm.FetchOffsets(testkit.Context(t, adminTimeout), group)
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

// EndOffsets returns the high watermark per partition of topic.
func EndOffsets(t testing.TB, b *brokertest.Broker, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	ends, err := adm.ListEndOffsets(testkit.Context(t, adminTimeout), topic)
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}
