package interop

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// franz-go opens a fetch session (KIP-227) as soon as the broker answers a
// full fetch with a SessionID, and then sends incremental fetches naming
// only partitions whose fetch offset moved. These tests consume through
// such sessions and check both that every record arrives exactly as
// produced and that the broker really served incremental fetches.

// fetchSessionEvent reads idem_fetch_session_events_total{event=…}.
func fetchSessionEvent(t *testing.T, b *brokertest.Broker, event string) float64 {
	t.Helper()
	v, _, ok := b.Metric(t, "idem_fetch_session_events_total", "event", event)
	if !ok {
		t.Fatalf("no idem_fetch_session_events_total{event=%q}", event)
	}
	return v
}

// collector gathers what a consumer polls, per partition in arrival order.
type collector struct {
	mu   sync.Mutex
	got  map[string][]string // "topic/partition" → values
	offs map[string][]int64
	n    int
}

func (c *collector) poll(ctx context.Context, t *testing.T, cl *kgo.Client) {
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if ctx.Err() == nil {
				t.Errorf("fetch %s/%d: %v", topic, p, err)
			}
		})
		c.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			k := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			c.got[k] = append(c.got[k], string(r.Value))
			c.offs[k] = append(c.offs[k], r.Offset)
			c.n++
		})
		c.mu.Unlock()
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// same fails unless every partition got exactly want's values, in order,
// at offsets 0, 1, 2, ….
func (c *collector) same(t *testing.T, want map[string][]string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, vs := range want {
		if !slices.Equal(c.got[k], vs) {
			t.Errorf("%s: consumed %d values %v…, want %d %v…", k, len(c.got[k]), brokerkit.Head(c.got[k]), len(vs), brokerkit.Head(vs))
			continue
		}
		for i, o := range c.offs[k] {
			if o != int64(i) {
				t.Errorf("%s: record %d at offset %d", k, i, o)
				break
			}
		}
	}
	for k := range c.got {
		if _, ok := want[k]; !ok {
			t.Errorf("consumed from %s, where nothing was produced", k)
		}
	}
}

// fetchReads is a kgo hook that keeps the size of the smallest Fetch
// response read.
type fetchReads struct {
	mu  sync.Mutex
	min int
}

func (f *fetchReads) OnBrokerRead(_ kgo.BrokerMetadata, key int16, n int, _, _ time.Duration, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if key == 1 && err == nil && (f.min == 0 || n < f.min) {
		f.min = n
	}
}

func (f *fetchReads) reset() { f.mu.Lock(); f.min = 0; f.mu.Unlock() }

func (f *fetchReads) smallest() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.min == 0 {
		return 1 << 30
	}
	return f.min
}

func TestFranzGoConsumesThroughIncrementalFetchSessions(t *testing.T) {
	b := startBroker(t)
	const wide, few = "wide", "few"
	brokerkit.CreateTopic(t, b, wide, 1000)
	brokerkit.CreateTopic(t, b, few, 4)
	ctx := testkit.Context(t, 90*time.Second)

	// A consumer of every partition of a 1,000-partition topic, and a group
	// consumer of a 4-partition one, both polling before anything exists.
	var direct, grouped collector
	direct.got, direct.offs = map[string][]string{}, map[string][]int64{}
	grouped.got, grouped.offs = map[string][]string{}, map[string][]int64{}
	var reads fetchReads
	dcl := b.Client(t, kgo.ConsumeTopics(wide), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond), kgo.WithHooks(&reads))
	gcl := b.Client(t, kgo.ConsumerGroup("sessions"), kgo.ConsumeTopics(few), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	pollCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, c := range []struct {
		col *collector
		cl  *kgo.Client
	}{{&direct, dcl}, {&grouped, gcl}} {
		wg.Add(1)
		go func() { defer wg.Done(); c.col.poll(pollCtx, t, c.cl) }()
	}
	defer func() { stop(); wg.Wait() }()

	// Both have sessions and fetch incrementally before the first record.
	testkit.Eventually(t, 30*time.Second, "two sessions and incremental fetches", func() bool {
		return fetchSessionEvent(t, b, "created") >= 2 && fetchSessionEvent(t, b, "incremental") >= 4
	})

	// Records arrive in rounds, each to a scattering of partitions, so
	// that incremental fetches (not the first full one) carry them.
	producer := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	want := map[string][]string{}
	total := 0
	for round := range 5 {
		var rs []*kgo.Record
		for i := range 400 {
			p := int32((i*7 + round*131) % 1000)
			v := fmt.Sprintf("wide-%d-%d", round, i)
			rs = append(rs, &kgo.Record{Topic: wide, Partition: p, Value: []byte(v)})
			k := fmt.Sprintf("%s/%d", wide, p)
			want[k] = append(want[k], v)
		}
		for i := range 40 {
			p := int32(i % 4)
			v := fmt.Sprintf("few-%d-%d", round, i)
			rs = append(rs, &kgo.Record{Topic: few, Partition: p, Value: []byte(v)})
			k := fmt.Sprintf("%s/%d", few, p)
			want[k] = append(want[k], v)
		}
		if err := producer.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce round %d: %v", round, err)
		}
		total += len(rs)
	}
	testkit.Eventually(t, 60*time.Second, "every record consumed", func() bool { return direct.count()+grouped.count() >= total })
	// Idle now: a full fetch of 1,000 partitions is tens of kilobytes
	// even with no records; an incremental answer with nothing new is a
	// header. The consumer of the wide topic reads such answers.
	reads.reset()
	testkit.Eventually(t, 10*time.Second, "a Fetch answer under 1 KiB to the 1,000-partition consumer", func() bool { return reads.smallest() < 1024 })
	stop()
	wg.Wait()

	wantWide, wantFew := map[string][]string{}, map[string][]string{}
	for k, v := range want {
		if k[:len(wide)+1] == wide+"/" {
			wantWide[k] = v
		} else {
			wantFew[k] = v
		}
	}
	direct.same(t, wantWide)
	grouped.same(t, wantFew)

	// Incremental fetches outnumber the sessions opened: some session
	// served an epoch above 1, i.e. the clients kept their sessions.
	created, incremental := fetchSessionEvent(t, b, "created"), fetchSessionEvent(t, b, "incremental")
	t.Logf("sessions created %v, incremental fetches %v", created, incremental)
	if incremental < 10*created {
		t.Errorf("%v incremental fetches for %v sessions: the clients did not stay on their sessions", incremental, created)
	}
}

// A read_committed consumer on a session sees committed transactions only:
// the last stable offset and the aborted transactions of session
// partitions reach it.
func TestFranzGoReadCommittedThroughAFetchSession(t *testing.T) {
	b := startBroker(t)
	const topic = "txn-session"
	brokerkit.CreateTopic(t, b, topic, 4)
	ctx := testkit.Context(t, 60*time.Second)
	var col collector
	col.got, col.offs = map[string][]string{}, map[string][]int64{}
	cl := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	pollCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); col.poll(pollCtx, t, cl) }()
	defer func() { stop(); <-done }()
	testkit.Eventually(t, 30*time.Second, "an incremental fetch", func() bool { return fetchSessionEvent(t, b, "incremental") >= 2 })

	producer := b.Client(t, kgo.TransactionalID("session-txn"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var committed []string
	for i, commit := range []bool{true, false, true, false, true} {
		if err := producer.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var rs []*kgo.Record
		for p := range int32(4) {
			rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "txn%d-p%d", i, p)})
		}
		if err := producer.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := producer.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		if commit {
			for _, r := range rs {
				committed = append(committed, string(r.Value))
			}
		}
	}
	testkit.Eventually(t, 30*time.Second, "the committed records", func() bool { return col.count() >= len(committed) })
	// One more committed transaction after the others: once it is read,
	// nothing aborted before it can still be on its way.
	if err := producer.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	last := &kgo.Record{Topic: topic, Partition: 0, Value: []byte("last")}
	if err := producer.ProduceSync(ctx, last).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := producer.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	committed = append(committed, "last")
	testkit.Eventually(t, 30*time.Second, "the last record", func() bool { return col.count() >= len(committed) })
	stop()
	<-done
	var got []string
	for _, vs := range col.got {
		got = append(got, vs...)
	}
	brokerkit.SameSet(t, "read_committed values", got, committed)
}
