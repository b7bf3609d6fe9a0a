package reliability

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
	"github.com/idem-dev/idem/internal/verify"
	"github.com/idem-dev/idem/internal/verify/verifytest"
)

// C4 of docs/reliability.md: idempotent producers with acks=all write
// while the broker process is killed with SIGKILL and restarted on its data
// directory every few seconds; afterwards a drain must show every
// acknowledged record exactly once, in each producer's order.

const (
	c4Topic      = "c4"
	c4Partitions = 3
)

// c4Workload is one kill -9 run: how many producers write, for how long, and
// with which acks. Both runs check the set (nothing acknowledged lost,
// nothing unexpected read); the idempotent run also forbids duplicates and
// reordering, which a plain acks=1 producer's retries may legitimately cause.
type c4Workload struct {
	producers   int
	faultWindow time.Duration
	sendEvery   time.Duration // per producer
	idempotent  bool          // acks=all + idempotence, else acks=1 without it
	minKills    int
	// proxyFault, if set, routes clients through a fault proxy that applies
	// it to one Produce every 0.3–1.5 s. FaultDropResponse lets the request
	// reach the broker, then drops the response and resets the connection:
	// the acknowledgement is lost although the records were appended, so the
	// producer's retry must be deduplicated.
	proxyFault verify.FaultKind
}

// c4Result is what a run observed, for the test to judge.
type c4Result struct {
	set         verify.SetResult
	order       verify.OrderResult
	kills       int
	proxyFaults int
}

func TestC4IdempotentProducersLoseAndDuplicateNothingAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("C4 runs for about a minute")
	}
	// 4 producers at ~500 records/s each, 35 s of kills every 3–8 s, and
	// lost acknowledgements in between.
	w := c4Workload{producers: 4, faultWindow: testkit.Soak(35*time.Second, 10*time.Minute), sendEvery: 2 * time.Millisecond, idempotent: true, minKills: 3, proxyFault: verify.FaultDropResponse}
	checkC4(t, w, runKillWorkload(t, w))
}

// acks=1 answers after write(2), before fsync: the durability contract says
// that survives a process crash (the page cache outlives the process), though
// not a power loss. Retries without idempotence may duplicate, so only loss
// and unexpected values fail this run.
func TestC4AcksOneLosesNothingAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about half a minute")
	}
	w := c4Workload{producers: 2, faultWindow: testkit.Soak(20*time.Second, 5*time.Minute), sendEvery: 2 * time.Millisecond, idempotent: false, minKills: 2}
	checkC4(t, w, runKillWorkload(t, w))
}

// The harness must be able to fail: with the proxy replaying acknowledged
// Produce requests stripped of their producer id (a broker that forgets to
// deduplicate, in effect), the same run and checks must report duplicates.
func TestC4DetectsDuplicatesFromABrokerThatDoesNotDeduplicate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	w := c4Workload{producers: 2, faultWindow: 5 * time.Second, sendEvery: 2 * time.Millisecond, idempotent: true, proxyFault: verify.FaultDuplicateProduce}
	res := runKillWorkload(t, w)
	if res.proxyFaults == 0 || len(res.set.Duplicated) == 0 {
		t.Fatalf("%d produce requests replayed without producer ids, yet the checker found no duplicates: %v", res.proxyFaults, res.set)
	}
	t.Logf("caught as expected: %d replays, %d duplicated values", res.proxyFaults, len(res.set.Duplicated))
}

// checkC4 judges a run: nothing acknowledged lost or unexpected ever; for
// idempotent producers also no duplicate and no reordering; and enough
// faults and progress that passing means something.
func checkC4(t *testing.T, w c4Workload, res c4Result) {
	t.Helper()
	if w.proxyFault != 0 && res.proxyFaults < 5 {
		t.Errorf("only %d proxy faults (%v): the path under test was barely exercised", res.proxyFaults, w.proxyFault)
	}
	if res.kills < w.minKills {
		t.Errorf("only %d kills in %v: the test did not exercise recovery enough", res.kills, w.faultWindow)
	}
	if res.set.Acknowledged < 1000 {
		t.Errorf("only %d acknowledged records: too little progress between faults to prove anything", res.set.Acknowledged)
	}
	if !res.set.Valid {
		t.Errorf("set check failed: %v", res.set)
	}
	if !w.idempotent {
		return
	}
	if len(res.set.Duplicated) > 0 {
		t.Errorf("idempotent producers wrote duplicates: %v", res.set)
	}
	if !res.order.Valid {
		t.Errorf("order check failed: %v", res.order)
	}
}

// runKillWorkload runs w against a broker process that a nemesis kills and
// restarts, drains the topic, and returns what the checkers found.
func runKillWorkload(t *testing.T, w c4Workload) c4Result {
	seed := verifytest.Seed(t)
	dataDir, logDir := t.TempDir(), t.TempDir()
	rec := verify.NewRecorder()
	verifytest.SaveOnFailure(t, seed, rec, dataDir, logDir)

	addr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(logDir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	seeds, advertised := addr, ""
	var proxy *verify.Proxy
	if w.proxyFault != 0 {
		if proxy, err = verify.NewProxy(addr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = proxy.Close() })
		proxy.OnFault = func(desc string) {
			rec.Add(verify.Op{Process: verify.NemesisProcess, Type: verify.Info, F: "proxy", Value: desc})
		}
		seeds, advertised = proxy.Addr(), proxy.Addr()
	}
	proc := brokerkit.Child{Addr: addr, DataDir: dataDir, Advertised: advertised}.Process(logFile)
	t.Cleanup(func() { _ = proc.Kill() })
	if err := proc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	createC4Topic(t, seeds)

	// Phase 1: producers and a reader run while the nemesis kills the broker.
	faults, stopFaults := context.WithTimeout(context.Background(), w.faultWindow)
	defer stopFaults()
	nem := verify.NewNemesis(proc, verify.NemesisConfig{
		Seed: seed, MinUp: 3 * time.Second, MaxUp: 8 * time.Second, MaxDown: 500 * time.Millisecond,
		Recorder: rec, Logf: t.Logf,
	})
	nemErr := make(chan error, 1)
	go func() { nemErr <- nem.Run(faults) }()
	var proxyWG sync.WaitGroup
	if proxy != nil {
		proxyWG.Add(1)
		go func() {
			defer proxyWG.Done()
			armProxy(faults, proxy, w.proxyFault, seed)
		}()
	}

	var wg sync.WaitGroup
	clients := make([]*kgo.Client, w.producers)
	for p := range w.producers {
		opts := []kgo.Opt{
			kgo.SeedBrokers(seeds),
			kgo.DefaultProduceTopic(c4Topic),
			kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
			kgo.ProducerLinger(time.Millisecond),
		}
		if w.idempotent {
			// acks=all and idempotence are franz-go's defaults; with them it
			// keeps up to 5 produce requests in flight per broker by itself.
			opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
		} else {
			opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		clients[p] = cl
		wg.Add(1)
		go func() {
			defer wg.Done()
			produceC4(faults, cl, p, w.sendEvery, rec)
		}()
	}
	readerCtx, stopReader := context.WithCancel(context.Background())
	var readerWG sync.WaitGroup
	readerWG.Add(1)
	go func() {
		defer readerWG.Done()
		readC4(readerCtx, seeds, rec)
	}()

	if err := <-nemErr; err != nil {
		t.Fatalf("nemesis: %v", err) // the broker could not restart on its own data
	}
	wg.Wait() // producers stop invoking when the fault window closes
	proxyWG.Wait()
	if proxy != nil {
		proxy.Clear() // heal
	}

	// Phase 2: heal (the nemesis left the broker running) and let every
	// outstanding send resolve; anything still unresolved stays "info".
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 20*time.Second)
	for _, cl := range clients {
		if err := cl.Flush(flushCtx); err != nil {
			t.Logf("flush: %v (unresolved sends count as indeterminate)", err)
		}
	}
	cancelFlush()
	stopReader()
	readerWG.Wait()
	awaitReadable(t, seeds, rec.History())

	// Phase 3: drain everything below the high watermark.
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelDrain()
	rec.Invoke(100, verify.FPoll, nil)
	records, err := verify.Drain(drainCtx, []string{seeds}, c4Topic)
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	rec.Complete(100, verify.OK, verify.FPoll, records, nil)

	h := rec.History()
	res := c4Result{set: verify.CheckSet(h), order: verify.CheckOrder(h), kills: nem.Kills()}
	if proxy != nil {
		res.proxyFaults = proxy.Applied()[w.proxyFault]
		t.Logf("proxy faults (%v): %d", w.proxyFault, res.proxyFaults)
	}
	t.Logf("kills: %d; %v", res.kills, res.set)
	return res
}

// awaitReadable waits until the high watermark of every partition covers
// the highest offset acknowledged in h, for up to 10 s. acks=1 is answered
// before the fsync and consumers read only what is durable: the background
// fsync follows within milliseconds, but on a loaded machine the drain
// could otherwise take the high watermark before it and report the last
// acknowledged batches lost. What is still not readable after 10 s is
// judged by the drain as before.
func awaitReadable(t *testing.T, seeds string, h verify.History) {
	want := map[int32]int64{}
	for _, op := range h {
		if r, ok := op.Value.(verify.Record); ok && op.F == verify.FSend && op.Type == verify.OK && r.Partition >= 0 {
			want[r.Partition] = max(want[r.Partition], r.Offset+1)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, err := adm.ListEndOffsets(ctx, c4Topic)
		cancel()
		readable := err == nil
		for p, end := range want {
			if o, ok := ends.Lookup(c4Topic, p); !ok || o.Offset < end {
				readable = false
			}
		}
		if readable {
			return
		}
	}
	t.Logf("after 10 s the high watermark still does not cover every acknowledged offset %v", want)
}

// armProxy arms the proxy to apply kind to one Produce at seeded intervals
// until ctx is done.
func armProxy(ctx context.Context, proxy *verify.Proxy, kind verify.FaultKind, seed int64) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x10e5ac5))
	for {
		d := 300*time.Millisecond + time.Duration(rng.Int64N(int64(1200*time.Millisecond)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		proxy.Add(verify.Rule{Kind: kind, APIKey: verify.APIProduce, Count: 1})
	}
}

// createC4Topic retries until the broker answers: it has just started.
func createC4Topic(t *testing.T, addr string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, c4Partitions, 1, nil, c4Topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("create topic: %v", err)
	}
}

// produceC4 sends unique values until ctx is done, recording each send's
// invocation and outcome. Sends are never retried above the client: any
// repeat in the log is the broker's doing.
func produceC4(ctx context.Context, cl *kgo.Client, p int, every time.Duration, rec *verify.Recorder) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		v := verify.Value(p, seq)
		rec.Invoke(p, verify.FSend, verify.Record{Value: v, Partition: -1, Offset: -1})
		// The record's own context is Background: cancelling it would fail
		// records already in flight, and their outcome is what we measure.
		cl.Produce(context.Background(), &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
			out := verify.Record{Value: v, Partition: -1, Offset: -1}
			if err == nil {
				out.Partition, out.Offset = r.Partition, r.Offset
			}
			rec.Complete(p, verify.SendOutcome(err), verify.FSend, out, err)
		})
	}
}

// readC4 polls the topic from the start for the whole run, recording what it
// sees, so that the checkers also catch a record served before a crash and
// then missing or moved after it.
func readC4(ctx context.Context, addr string, rec *verify.Recorder) {
	const proc = 50
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c4Topic: {
			0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart(),
		}}),
	)
	if err != nil {
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		var rs []verify.Record
		fs.EachRecord(func(r *kgo.Record) {
			rs = append(rs, verify.Record{Value: string(r.Value), Partition: r.Partition, Offset: r.Offset})
		})
		if len(rs) > 0 {
			rec.Invoke(proc, verify.FPoll, nil)
			rec.Complete(proc, verify.OK, verify.FPoll, rs, nil)
		}
	}
}
