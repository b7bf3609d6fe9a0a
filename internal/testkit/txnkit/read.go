package txnkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Numbers are a copier's input: "0" … "n-1".
func Numbers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// CreateTopics creates topics with partitions each, retrying while the
// broker starts.
func CreateTopics(t testing.TB, seeds []string, partitions int32, topics ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, topics...)
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	for _, r := range resp {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			t.Fatalf("create topic %s: %v", r.Topic, r.Err)
		}
	}
}

// SeedInput writes vs to topic round-robin with an idempotent producer and
// waits for every acknowledgement.
func SeedInput(t testing.TB, seeds []string, topic string, vs []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var rs []*kgo.Record
	for _, v := range vs {
		rs = append(rs, &kgo.Record{Value: []byte(v)})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("seed %s: %v", topic, err)
	}
}

// Seen is what a read_committed reader of the output saw: every value with
// every position it was read at. It is safe for concurrent use.
type Seen struct {
	mu  sync.Mutex
	pos map[string]map[string]bool // value → "partition/offset" set
}

// NewSeen returns an empty Seen.
func NewSeen() *Seen { return &Seen{pos: map[string]map[string]bool{}} }

// Add records r: its value at its position.
func (s *Seen) Add(r *kgo.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := string(r.Value)
	if s.pos[v] == nil {
		s.pos[v] = map[string]bool{}
	}
	s.pos[v][fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = true
}

// Distinct counts the distinct values seen.
func (s *Seen) Distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pos)
}

// Check compares what was seen with want: nothing missing, nothing
// unexpected, and no value at two positions (a duplicate in the log).
func (s *Seen) Check(t testing.TB, who string, want []string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	wantSet := map[string]bool{}
	for _, v := range want {
		wantSet[v] = true
	}
	var missing, unexpected, dups []string
	for _, v := range want {
		if s.pos[v] == nil {
			missing = append(missing, v)
		}
	}
	for v, ps := range s.pos {
		if !wantSet[v] {
			unexpected = append(unexpected, v)
		}
		if len(ps) > 1 {
			dups = append(dups, fmt.Sprintf("%s@%v", v, keys(ps)))
		}
	}
	if len(missing)+len(unexpected)+len(dups) > 0 {
		t.Errorf("%s: %d values, %d missing %v, %d unexpected %v, %d duplicated %v", who, len(s.pos),
			len(missing), first(missing), len(unexpected), first(unexpected), len(dups), first(dups))
	}
}

// ByPartition returns, per partition, the values in offset order (a value
// seen at two positions appears twice).
func (s *Seen) ByPartition() map[int32][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	type at struct {
		off int64
		v   string
	}
	parts := map[int32][]at{}
	for v, ps := range s.pos {
		for pos := range ps {
			var p int32
			var off int64
			fmt.Sscanf(pos, "%d/%d", &p, &off)
			parts[p] = append(parts[p], at{off, v})
		}
	}
	out := map[int32][]string{}
	for p, as := range parts {
		sort.Slice(as, func(i, j int) bool { return as[i].off < as[j].off })
		for _, a := range as {
			out[p] = append(out[p], a.v)
		}
	}
	return out
}

// CheckOrder compares the output with the input partition by partition:
// the copier copies partition p to partition p, so committed output must
// keep the input's order (Kafka's copier test checks the same).
func CheckOrder(t testing.TB, in, out *Seen) {
	t.Helper()
	want, got := in.ByPartition(), out.ByPartition()
	for p, vs := range want {
		if !slices.Equal(got[p], vs) {
			i := 0
			for i < len(vs) && i < len(got[p]) && vs[i] == got[p][i] {
				i++
			}
			t.Errorf("partition %d: output order differs from the input at position %d of %d (input %v…, output %v…)",
				p, i, len(vs), vs[i:min(i+3, len(vs))], got[p][i:min(i+3, len(got[p]))])
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func first(vs []string) []string {
	sort.Strings(vs)
	if len(vs) > 10 {
		return append(vs[:10:10], "…")
	}
	return vs
}

// ReadCommitted reads topic from the start with read_committed until ctx
// ends, adding every record to s.
func ReadCommitted(ctx context.Context, seeds []string, topic string, s *Seen) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(s.Add)
	}
	return nil
}

// DrainCommitted reads topic with a fresh read_committed consumer until it
// has seen n distinct values and then quiet more, or until timeout.
func DrainCommitted(t testing.TB, seeds []string, topic string, n int, quiet, timeout time.Duration) *Seen {
	t.Helper()
	s := NewSeen()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() { done <- ReadCommitted(rctx, seeds, topic, s) }()
	for ctx.Err() == nil && s.Distinct() < n {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(quiet)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("drain %s: %v", topic, err)
	}
	return s
}
