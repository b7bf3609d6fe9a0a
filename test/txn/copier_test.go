package txn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
)

// copierConfig describes one consume-transform-produce copier, the shape of
// Kafka's TransactionalMessageCopier: read_committed from In, copy each
// record to the same partition of Out inside a transaction together with the
// consumed offsets, and abort a random share of the transactions (the
// session then rewinds to the last committed offsets).
type copierConfig struct {
	Seeds      []string
	In, Out    string
	Group      string
	TxnID      string
	InstanceID string  // static membership: a restarted copier takes its old place at once
	Batch      int     // records per transaction at most
	AbortRate  float64 // share of transactions aborted on purpose
	Seed       uint64
}

// runCopier copies until ctx ends. Errors of single transactions are logged
// and the loop goes on, as an application would; only a fatal client error
// (such as being fenced by a newer instance) ends it.
func runCopier(ctx context.Context, cfg copierConfig, logf func(string, ...any)) error {
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(cfg.Seeds...),
		kgo.TransactionalID(cfg.TxnID),
		kgo.TransactionTimeout(20*time.Second),
		kgo.ConsumerGroup(cfg.Group),
		kgo.InstanceID(cfg.InstanceID),
		kgo.SessionTimeout(6*time.Second),
		kgo.ConsumeTopics(cfg.In),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic(cfg.Out),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RetryTimeout(60*time.Second),
	)
	if err != nil {
		return err
	}
	defer sess.Close()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed))
	for ctx.Err() == nil {
		fs := sess.PollRecords(ctx, cfg.Batch)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) { logf("copier %s: fetch %s/%d: %v", cfg.TxnID, t, p, err) })
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		for _, r := range recs {
			sess.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value, Partition: r.Partition}, nil)
		}
		abort := rng.Float64() < cfg.AbortRate
		committed, err := sess.End(ctx, kgo.TransactionEndTry(!abort))
		switch {
		case err != nil && (errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed)):
			return fmt.Errorf("end: %w", err)
		case err != nil:
			logf("copier %s: end (commit=%v): %v", cfg.TxnID, !abort, err)
		case !abort && !committed:
			logf("copier %s: commit turned into an abort", cfg.TxnID)
		}
	}
	return nil
}

// runCopierProcess is the copier as a child process for C6.
func runCopierProcess(spec string) int {
	var cfg copierConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", copierEnv, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := runCopier(ctx, cfg, func(f string, a ...any) { logger.Info(fmt.Sprintf(f, a...)) })
	if err != nil {
		logger.Error("copier stopped", "err", err)
		return 1
	}
	return 0
}

// values are the input: "0" … "n-1".
func values(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// createTopics creates topics with partitions each, retrying while the
// broker starts.
func createTopics(t testing.TB, seeds []string, partitions int32, topics ...string) {
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

// seedInput writes vs to topic round-robin with an idempotent producer and
// waits for every acknowledgement.
func seedInput(t testing.TB, seeds []string, topic string, vs []string) {
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

// seen is what a read_committed reader of the output saw: every value with
// every position it was read at.
type seen struct {
	mu  sync.Mutex
	pos map[string]map[string]bool // value → "partition/offset" set
}

func newSeen() *seen { return &seen{pos: map[string]map[string]bool{}} }

func (s *seen) add(r *kgo.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := string(r.Value)
	if s.pos[v] == nil {
		s.pos[v] = map[string]bool{}
	}
	s.pos[v][fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = true
}

func (s *seen) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pos)
}

// check compares what was seen with want: nothing missing, nothing
// unexpected, and no value at two positions (a duplicate in the log).
func (s *seen) check(t testing.TB, who string, want []string) {
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

// byPartition returns, per partition, the values in offset order (a value
// seen at two positions appears twice).
func (s *seen) byPartition() map[int32][]string {
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

// checkOrder compares the output with the input partition by partition:
// the copier copies partition p to partition p, so committed output must
// keep the input's order (Kafka's copier test checks the same).
func checkOrder(t testing.TB, in, out *seen) {
	t.Helper()
	want, got := in.byPartition(), out.byPartition()
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

// readCommitted reads topic from the start with read_committed until ctx
// ends, adding every record to s.
func readCommitted(ctx context.Context, seeds []string, topic string, s *seen) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(s.add)
	}
	return nil
}

// drainCommitted reads topic with a fresh read_committed consumer until it
// has seen n distinct values and then quiet more, or until timeout.
func drainCommitted(t testing.TB, seeds []string, topic string, n int, quiet, timeout time.Duration) *seen {
	t.Helper()
	s := newSeen()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() { done <- readCommitted(rctx, seeds, topic, s) }()
	for ctx.Err() == nil && s.distinct() < n {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(quiet)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("drain %s: %v", topic, err)
	}
	return s
}

// TestGroupTransactSessionCopier: two franz-go GroupTransactSession copiers
// in one group copy 3,000 values in transactions, a fifth of them aborted on
// purpose; a read_committed consumer running during the copy and one
// reading afterwards each see every input value exactly once.
func TestGroupTransactSessionCopier(t *testing.T) {
	b := brokertest.Run(t, brokerOptions()...)
	seeds := []string{b.Addr()}
	const n = 3000
	createTopics(t, seeds, 2, "in", "out")
	input := values(n)
	seedInput(t, seeds, "in", input)

	concurrent := newSeen()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := readCommitted(ctx, seeds, "out", concurrent); err != nil {
			t.Errorf("concurrent reader: %v", err)
		}
	}()
	copyCtx, stopCopy := context.WithCancel(ctx)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := runCopier(copyCtx, copierConfig{
				Seeds: seeds, In: "in", Out: "out", Group: "copiers",
				TxnID: fmt.Sprint("copier-", i), InstanceID: fmt.Sprint("copier-", i),
				Batch: 100, AbortRate: 0.2, Seed: uint64(i + 1),
			}, t.Logf)
			if err != nil {
				t.Errorf("copier %d: %v", i, err)
			}
		}()
	}
	for ctx.Err() == nil && concurrent.distinct() < n {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a late duplicate would show now
	stopCopy()
	cancel()
	wg.Wait()
	concurrent.check(t, "concurrent read_committed consumer", input)
	final := drainCommitted(t, seeds, "out", n, time.Second, 30*time.Second)
	final.check(t, "read_committed drain after the copy", input)
	checkOrder(t, drainCommitted(t, seeds, "in", n, 0, 30*time.Second), final)
}
