package reliability

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/testkit/brokerkit"
	"github.com/idem-dev/idem/internal/verify"
	"github.com/idem-dev/idem/internal/verify/verifytest"
)

// c5 is C5 (docs/reliability.md): a Jepsen-style queue workload against a
// broker process behind the fault proxy. Transactional writers send 1–4
// values to random partitions and commit (or, one time in four, abort); an
// idempotent writer sends single values; readers poll every partition by
// assignment, and one as a group member, with read_committed. Every operation goes into one history;
// after the faults heal, a final drain reads everything, and the log checker
// judges the history alone.
//
// The workload needs only the broker's address: the broker may be a child
// process (C5 below, and the soak's process mode) or in process on a
// crashable file system (the soak's power-loss mode, soak_test.go).
type c5 struct {
	t    *testing.T
	seed int64
	addr string        // the broker, for setup and the final drain
	px   *verify.Proxy // every workload connection goes through it
	rec  *verify.Recorder
	// pace, if set, is each writer's pause between two operations: a soak
	// of hours paces its writers so that the history stays small enough
	// to keep and check.
	pace time.Duration
	// drainTimeout bounds the final drain (default 45 s).
	drainTimeout time.Duration
	// stopTimeout is how long the workload's clients may take to stop
	// after the window (default 2 min): a transactional or idempotent send
	// to a broker that is down is retried for as long as the client lives,
	// whatever its deadline, so past it run closes them and fails.
	stopTimeout time.Duration

	// clients are the workload's open clients, for run to close if they
	// do not stop after the window (a broker that never came back).
	mu      sync.Mutex
	clients map[*kgo.Client]bool
	closed  bool
}

// client makes a workload client routed through the proxy; release closes it.
func (c *c5) client(opts ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(c.opts(opts...)...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cl.Close()
		return nil, errors.New("the workload's clients were closed")
	}
	if c.clients == nil {
		c.clients = map[*kgo.Client]bool{}
	}
	c.clients[cl] = true
	return cl, nil
}

func (c *c5) release(cl *kgo.Client) {
	if cl == nil {
		return
	}
	c.mu.Lock()
	delete(c.clients, cl)
	c.mu.Unlock()
	cl.Close()
}

// closeClients closes every open workload client (blocked sends fail with
// ErrClientClosed) and every client made later.
func (c *c5) closeClients() {
	c.mu.Lock()
	c.closed = true
	cls := c.clients
	c.clients = nil
	c.mu.Unlock()
	for cl := range cls {
		cl.Close()
	}
}

const c5Topic = "c5"
const c5Partitions = 4

// newC5 puts a fault proxy in front of the broker at addr and creates the
// workload's topic with topicConfigs. Operations go to rec.
func newC5(t *testing.T, seed int64, addr string, rec *verify.Recorder, topicConfigs map[string]*string) *c5 {
	t.Helper()
	c := &c5{t: t, seed: seed, addr: addr, rec: rec, drainTimeout: 45 * time.Second, stopTimeout: 2 * time.Minute}
	var err error
	if c.px, err = verify.NewProxy(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.px.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, c5Partitions, 1, topicConfigs, c5Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startC5 runs C5's broker, a child process on a data directory it returns,
// and the workload against it.
func startC5(t *testing.T) (c *c5, proc *verify.Process, dataDir string) {
	t.Helper()
	dataDir = filepath.Join(t.TempDir(), "data")
	addr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	proc = brokerkit.Child{Addr: addr, DataDir: dataDir, Quiet: true, Properties: noRebalanceDelay}.Process(nil)
	proc.StartTimeout = 20 * time.Second
	if err := proc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop(10 * time.Second) })
	return newC5(t, verifytest.Seed(t), addr, verify.NewRecorder(), nil), proc, dataDir
}

// opts route every broker connection through the proxy.
func (c *c5) opts(extra ...kgo.Opt) []kgo.Opt {
	return append([]kgo.Opt{
		kgo.SeedBrokers(c.addr),
		kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, c.px.Addr())
		}),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		kgo.RequestTimeoutOverhead(3 * time.Second),
		kgo.ProduceRequestTimeout(time.Second),
	}, extra...)
}

// run drives the workload until ctx ends (faults, if any, are the
// caller's, in during), then drains and returns the checker's verdict.
func (c *c5) run(ctx context.Context, during func(ctx context.Context)) verify.LogResult {
	var wg sync.WaitGroup
	for proc := 1; proc <= 2; proc++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.txnWriter(ctx, proc) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); c.plainWriter(ctx, 3) }()
	for proc := 10; proc <= 11; proc++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.reader(ctx, proc) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); c.subscriber(ctx, c5Subscriber) }()
	if during != nil {
		wg.Add(1)
		go func() { defer wg.Done(); during(ctx) }()
	}
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		select {
		case <-stopped:
		case <-time.After(c.stopTimeout):
			c.closeClients()
			<-stopped
			c.t.Fatalf("the workload's clients were still sending %v after the window: is the broker down?", c.stopTimeout)
		}
	}
	c.px.Clear()
	c.drain()
	return verify.CheckLog(c.rec.History(), verify.LogOptions{Assign: true, Subscribers: map[int]bool{c5Subscriber: true}, FinalDrain: true})
}

// committedTxns counts the transactions that committed: the history holds
// a transactional workload only if some did.
func (c *c5) committedTxns() int {
	n := 0
	for _, op := range c.rec.History() {
		if op.F == verify.FTxn && op.Type == verify.OK {
			n++
		}
	}
	return n
}

// paced waits c.pace, or until ctx ends.
func (c *c5) paced(ctx context.Context) {
	if c.pace <= 0 {
		return
	}
	t := time.NewTimer(c.pace)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// txnWriter runs transactions until ctx ends. After any error it records the
// transaction's outcome as unknown and starts a new client with the same
// transactional id, which fences the old one and aborts what it left open.
func (c *c5) txnWriter(ctx context.Context, proc int) {
	rng := rand.New(rand.NewPCG(uint64(c.seed), uint64(proc)))
	newClient := func() *kgo.Client {
		cl, err := c.client(kgo.TransactionalID(fmt.Sprintf("c5-writer-%d", proc)),
			kgo.TransactionTimeout(6*time.Second), kgo.DefaultProduceTopic(c5Topic),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(15*time.Second))
		if err != nil && ctx.Err() == nil {
			c.t.Error(err)
		}
		return cl
	}
	cl := newClient()
	defer func() { c.release(cl) }()
	for seq := 0; ctx.Err() == nil && cl != nil; c.paced(ctx) {
		n := 1 + rng.IntN(4)
		rs := make([]*kgo.Record, n)
		inv := make([]verify.Record, n)
		for i := range n {
			v := verify.Value(proc, seq)
			seq++
			p := rng.Int32N(c5Partitions)
			rs[i] = &kgo.Record{Value: []byte(v), Partition: p}
			inv[i] = verify.Record{Value: v, Partition: p, Offset: -1}
		}
		abort := rng.IntN(4) == 0
		c.rec.Invoke(proc, verify.FTxn, inv)
		opctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := cl.BeginTransaction()
		var res kgo.ProduceResults
		if err == nil {
			res = cl.ProduceSync(opctx, rs...)
			err = res.FirstErr()
		}
		if err == nil {
			end := kgo.TryCommit
			if abort {
				end = kgo.TryAbort
			}
			err = cl.EndTransaction(opctx, end)
		}
		cancel()
		switch {
		case err == nil && abort:
			c.rec.Complete(proc, verify.Fail, verify.FTxn, inv, nil)
		case err == nil:
			out := make([]verify.Record, n)
			for i, r := range res {
				out[i] = verify.Record{Value: string(r.Record.Value), Partition: r.Record.Partition, Offset: r.Record.Offset}
			}
			c.rec.Complete(proc, verify.OK, verify.FTxn, out, nil)
		default:
			c.rec.Complete(proc, verify.Info, verify.FTxn, inv, err)
			c.release(cl)
			cl = newClient()
		}
	}
}

// plainWriter sends single values with the idempotent producer.
func (c *c5) plainWriter(ctx context.Context, proc int) {
	rng := rand.New(rand.NewPCG(uint64(c.seed), uint64(proc)))
	cl, err := c.client(kgo.DefaultProduceTopic(c5Topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordDeliveryTimeout(15*time.Second))
	if err != nil {
		c.t.Error(err)
		return
	}
	defer c.release(cl)
	for seq := 0; ctx.Err() == nil; seq++ {
		c.paced(ctx)
		v := verify.Value(proc, seq)
		p := rng.Int32N(c5Partitions)
		c.rec.Invoke(proc, verify.FSend, verify.Record{Value: v, Partition: -1, Offset: -1})
		opctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r, err := cl.ProduceSync(opctx, &kgo.Record{Value: []byte(v), Partition: p}).First()
		cancel()
		if err != nil {
			c.rec.Complete(proc, verify.SendOutcome(err), verify.FSend, verify.Record{Value: v, Partition: -1, Offset: -1}, err)
			continue
		}
		c.rec.Complete(proc, verify.OK, verify.FSend, verify.Record{Value: v, Partition: r.Partition, Offset: r.Offset}, nil)
	}
}

func (c *c5) reader(ctx context.Context, proc int) {
	parts := map[int32]kgo.Offset{}
	for p := range int32(c5Partitions) {
		parts[p] = kgo.NewOffset().AtStart()
	}
	cl, err := c.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c5Topic: parts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		c.t.Error(err)
		return
	}
	defer c.release(cl)
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		var rs []verify.Record
		fs.EachRecord(func(r *kgo.Record) {
			rs = append(rs, verify.Record{Value: string(r.Value), Partition: r.Partition, Offset: r.Offset})
		})
		if len(rs) > 0 {
			c.rec.Invoke(proc, verify.FPoll, nil)
			c.rec.Complete(proc, verify.OK, verify.FPoll, rs, nil)
		}
	}
}

// c5Subscriber is the process number of the group consumer.
const c5Subscriber = 12

// subscriber consumes as a group member (read_committed, offsets committed
// automatically), so broker kills and pauses make it rebalance and resume
// from committed offsets: its polls may go back, which the checker allows
// for it, but never see an aborted or duplicated value.
func (c *c5) subscriber(ctx context.Context, proc int) {
	cl, err := c.client(kgo.ConsumeTopics(c5Topic), kgo.ConsumerGroup("c5-subscribers"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.SessionTimeout(6*time.Second))
	if err != nil {
		c.t.Error(err)
		return
	}
	defer c.release(cl)
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		var rs []verify.Record
		fs.EachRecord(func(r *kgo.Record) {
			rs = append(rs, verify.Record{Value: string(r.Value), Partition: r.Partition, Offset: r.Offset})
		})
		if len(rs) > 0 {
			c.rec.Invoke(proc, verify.FPoll, nil)
			c.rec.Complete(proc, verify.OK, verify.FPoll, rs, nil)
		}
	}
}

// drain waits until no transaction is open (last stable offset = high
// watermark everywhere), then reads every partition from the start with
// read_committed, as one poll of its own process.
func (c *c5) drain() {
	t := c.t
	ctx, cancel := context.WithTimeout(context.Background(), c.drainTimeout)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.addr))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	var end kadm.ListedOffsets
	for {
		hwm, err1 := adm.ListEndOffsets(ctx, c5Topic)
		lso, err2 := adm.ListCommittedOffsets(ctx, c5Topic)
		if err1 == nil && err2 == nil && hwm.Error() == nil && lso.Error() == nil {
			stable := true
			hwm.Each(func(o kadm.ListedOffset) {
				if l, _ := lso.Lookup(c5Topic, o.Partition); l.Offset != o.Offset {
					stable = false
				}
			})
			if stable {
				end = lso
				break
			}
		}
		if ctx.Err() != nil {
			cl.Close()
			t.Fatalf("transactions still open %v after the heal: hwm %v lso %v", c.drainTimeout, hwm, lso)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cl.Close()
	parts := map[int32]kgo.Offset{}
	for p := range int32(c5Partitions) {
		parts[p] = kgo.NewOffset().AtStart()
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c5Topic: parts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	next := map[int32]int64{}
	reached := func() bool {
		ok := true
		end.Each(func(o kadm.ListedOffset) {
			if next[o.Partition] < o.Offset {
				ok = false
			}
		})
		return ok
	}
	var rs []verify.Record
	c.rec.Invoke(99, verify.FPoll, nil)
	// Markers are kept (and not recorded) so the position reaches the end
	// even when a marker is last; 2 s without records also ends the drain.
	for !reached() {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fs := rd.PollFetches(pctx)
		pcancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			n++
			if !r.Attrs.IsControl() {
				rs = append(rs, verify.Record{Value: string(r.Value), Partition: r.Partition, Offset: r.Offset})
			}
		})
		if n == 0 && pctx.Err() != nil {
			break
		}
	}
	c.rec.Complete(99, verify.OK, verify.FPoll, rs, nil)
}

func TestC5QueueWorkloadSurvivesKillPauseLatencyAndLateRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("C5 runs 30 s of faults")
	}
	c, proc, dataDir := startC5(t)
	mix := verify.NewMix(verify.MixConfig{
		Seed: c.seed, Broker: proc, Proxies: []*verify.Proxy{c.px},
		// Every kind at least once per round: kill -9, SIGSTOP, latency,
		// a request held past its client's timeout and delivered late
		// (the KAFKA-17754 shape), lost produce acknowledgements.
		Faults:   []verify.MixFault{verify.MixKill, verify.MixPause, verify.MixLatency, verify.MixHold, verify.MixLostAck},
		Rounds:   true,
		MinQuiet: 500 * time.Millisecond, MaxQuiet: 2 * time.Second,
		MinFault: 300 * time.Millisecond, MaxFault: 1500 * time.Millisecond,
		// Past every client deadline (request timeout overhead 3 s, produce
		// timeout 1 s): the client gives up and moves on, then the request
		// lands.
		HoldFor:  5 * time.Second,
		Recorder: c.rec, Logf: t.Logf,
	})
	verifytest.SaveMixOnFailure(t, mix, c.rec, dataDir)
	// 30 s in CI; IDEM_C5_WINDOW (e.g. 30m) turns it into a soak run.
	window := 30 * time.Second
	if w := os.Getenv("IDEM_C5_WINDOW"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil {
			t.Fatalf("IDEM_C5_WINDOW=%q: %v", w, err)
		}
		window = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var mixErr error
	r := c.run(ctx, func(ctx context.Context) { mixErr = mix.Run(ctx) })
	if mixErr != nil {
		t.Fatal(mixErr)
	}
	t.Logf("faults %v; %v", mix.Counts(), r)
	if !r.Valid {
		t.Fatalf("C5: %v", r)
	}
	counts := mix.Counts()
	for _, f := range []verify.MixFault{verify.MixKill, verify.MixPause, verify.MixLatency, verify.MixHold, verify.MixLostAck} {
		if counts[f] == 0 && window >= 30*time.Second { // a round of five fits in 30 s
			t.Fatalf("no %s in %v: %v", f, window, counts)
		}
	}
	if r.Acknowledged < 100 || r.Read < r.Acknowledged || c.committedTxns() == 0 {
		t.Fatalf("too little traffic to mean anything (%d transactions committed): %v", c.committedTxns(), r)
	}
}

// The same workload with a broker that forgets producer sequences (the
// proxy replays acknowledged produces without their producer identity)
// must fail the checker.
func TestC5CheckerCatchesABrokerThatDuplicatesAcknowledgedProduces(t *testing.T) {
	if testing.Short() {
		t.Skip("C5's twin starts a broker process")
	}
	c, _, _ := startC5(t)
	c.px.Add(verify.Rule{Kind: verify.FaultDuplicateProduce, APIKey: verify.APIProduce, Count: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r := c.run(ctx, nil)
	t.Logf("%v", r)
	if r.Valid || r.Count(verify.AnomalyDuplicate) == 0 {
		t.Fatalf("duplicating broker not caught: %v", r)
	}
}
