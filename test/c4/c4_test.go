// Package c4 is test C4 of reliability-plan.md §7.2: idempotent producers
// with acks=all write while the broker process is killed with SIGKILL and
// restarted on its data directory every few seconds; afterwards a drain must
// show every acknowledged record exactly once, in each producer's order.
package c4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/verify"
)

// The test binary doubles as the broker process: with brokerEnv set it runs
// a broker on the given address and data dir until SIGTERM (or SIGKILL),
// which saves building the idem binary inside a 90-second budget.
const (
	brokerEnv = "IDEM_C4_BROKER" // "addr,datadir"
	topic     = "c4"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(brokerEnv); spec != "" {
		os.Exit(runBroker(spec))
	}
	os.Exit(m.Run())
}

func runBroker(spec string) int {
	addr, dir, ok := strings.Cut(spec, ",")
	if !ok {
		fmt.Fprintf(os.Stderr, "%s=%q: want addr,datadir\n", brokerEnv, spec)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	b, err := broker.New(
		broker.WithDataDir(dir),
		broker.WithKafkaAddr(addr),
		broker.WithAdminAddr(""),
		broker.WithLogger(logger),
	)
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		logger.Error("c4 broker failed to start", "err", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	if err := b.Close(); err != nil {
		logger.Error("c4 broker close", "err", err)
		return 1
	}
	return 0
}

const partitions = 3

// workload is one kill -9 run: how many producers write, for how long, and
// with which acks. Both runs check the set (nothing acknowledged lost,
// nothing unexpected read); the idempotent run also forbids duplicates and
// reordering, which a plain acks=1 producer's retries may legitimately cause.
type workload struct {
	producers   int
	faultWindow time.Duration
	sendEvery   time.Duration // per producer
	idempotent  bool          // acks=all + idempotence, else acks=1 without it
	minKills    int
}

func TestC4IdempotentProducersLoseAndDuplicateNothingAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("C4 runs for about a minute")
	}
	// 4 producers at ~500 records/s each, 35 s of kills every 3–8 s.
	runKillWorkload(t, workload{producers: 4, faultWindow: 35 * time.Second, sendEvery: 2 * time.Millisecond, idempotent: true, minKills: 3})
}

// acks=1 answers after write(2), before fsync: the durability contract says
// that survives a process crash (the page cache outlives the process), though
// not a power loss. Retries without idempotence may duplicate, so only loss
// and unexpected values fail this run.
func TestC4AcksOneLosesNothingAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about half a minute")
	}
	runKillWorkload(t, workload{producers: 2, faultWindow: 20 * time.Second, sendEvery: 2 * time.Millisecond, idempotent: false, minKills: 2})
}

func runKillWorkload(t *testing.T, w workload) {
	seed := verify.Seed(t)
	dataDir, logDir := t.TempDir(), t.TempDir()
	rec := verify.NewRecorder()
	verify.SaveOnFailure(t, seed, rec, dataDir, logDir)

	addr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(logDir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	proc := &verify.Process{
		Path:   os.Args[0],
		Args:   []string{"-test.run=^$"},
		Env:    []string{brokerEnv + "=" + addr + "," + dataDir},
		Addr:   addr,
		Output: logFile,
	}
	t.Cleanup(func() { _ = proc.Kill() })
	if err := proc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	createTopic(t, addr)

	// Phase 1: producers and a reader run while the nemesis kills the broker.
	faults, stopFaults := context.WithTimeout(context.Background(), w.faultWindow)
	defer stopFaults()
	nem := verify.NewNemesis(proc, verify.NemesisConfig{
		Seed: seed, MinUp: 3 * time.Second, MaxUp: 8 * time.Second, MaxDown: 500 * time.Millisecond,
		Recorder: rec, Logf: t.Logf,
	})
	nemErr := make(chan error, 1)
	go func() { nemErr <- nem.Run(faults) }()

	var wg sync.WaitGroup
	clients := make([]*kgo.Client, w.producers)
	for p := range w.producers {
		opts := []kgo.Opt{
			kgo.SeedBrokers(addr),
			kgo.DefaultProduceTopic(topic),
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
			produce(faults, cl, p, w.sendEvery, rec)
		}()
	}
	readerCtx, stopReader := context.WithCancel(context.Background())
	var readerWG sync.WaitGroup
	readerWG.Add(1)
	go func() {
		defer readerWG.Done()
		read(readerCtx, addr, rec)
	}()

	if err := <-nemErr; err != nil {
		t.Fatalf("nemesis: %v", err) // the broker could not restart on its own data
	}
	wg.Wait() // producers stop invoking when the fault window closes

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

	// Phase 3: drain everything below the high watermark.
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelDrain()
	rec.Invoke(100, verify.FPoll, nil)
	records, err := verify.Drain(drainCtx, []string{addr}, topic)
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	rec.Complete(100, verify.OK, verify.FPoll, records, nil)

	h := rec.History()
	set := verify.CheckSet(h)
	t.Logf("kills: %d; %v", nem.Kills(), set)
	if nem.Kills() < w.minKills {
		t.Errorf("only %d kills in %v: the test did not exercise recovery enough", nem.Kills(), w.faultWindow)
	}
	if set.Acknowledged < 1000 {
		t.Errorf("only %d acknowledged records: too little progress between faults to prove anything", set.Acknowledged)
	}
	if !set.Valid {
		t.Errorf("set check failed: %v", set)
	}
	if !w.idempotent {
		return
	}
	if len(set.Duplicated) > 0 {
		t.Errorf("idempotent producers wrote duplicates: %v", set)
	}
	if order := verify.CheckOrder(h); !order.Valid {
		t.Errorf("order check failed: %v", order)
	}
}

// createTopic retries until the broker answers: it has just started.
func createTopic(t *testing.T, addr string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("create topic: %v", err)
	}
}

// produce sends unique values until ctx is done, recording each send's
// invocation and outcome. Sends are never retried above the client: any
// repeat in the log is the broker's doing.
func produce(ctx context.Context, cl *kgo.Client, p int, every time.Duration, rec *verify.Recorder) {
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

// read polls the topic from the start for the whole run, recording what it
// sees, so that the checkers also catch a record served before a crash and
// then missing or moved after it.
func read(ctx context.Context, addr string, rec *verify.Recorder) {
	const proc = 50
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {
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
