package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
	"github.com/idem-dev/idem/internal/verify"
	"github.com/idem-dev/idem/internal/verify/verifytest"
)

// C10: share groups (queues) under kill -9 and power loss. Share consumers
// (child processes) accept, release and reject records of a 4-partition
// topic, some records always failing (poison: released until the delivery
// limit sends them to the dead-letter topic); the consumers are SIGKILLed
// every second or two and the broker every few seconds (or, in the
// power-loss variant, an in-process broker on a MemFS loses everything not
// fsynced). Each consumer logs what it got and what the broker answered;
// verify.CheckShare then proves that every record ended exactly once,
// accepted or dead-lettered, that none was accepted twice after its ACCEPT
// was answered, none lost, and no two members held one record at once.

const (
	c10Group   = "c10"
	c10Topic   = "jobs"
	c10DLQ     = "dlq.jobs"
	c10Lock    = 2 * time.Second
	c10Limit   = 3
	c10Members = 3
)

// c10Properties make short locks legal and let the dead-letter topic be
// created on first use.
var c10Properties = map[string]string{
	"group.initial.rebalance.delay.ms":                 "0",
	"group.share.min.record.lock.duration.ms":          "1000",
	"errors.deadletterqueue.auto.create.topics.enable": "true",
}

// shareConsumerEnv selects the share-consumer role; its value is a
// shareConsumerSpec as JSON.
const shareConsumerEnv = "IDEM_RELIABILITY_SHARE_CONSUMER"

var shareConsumerRole = testkit.Role{Env: shareConsumerEnv, Run: runShareConsumer}

type shareConsumerSpec struct {
	Seeds  []string `json:"seeds"`
	Name   string   `json:"name"`
	Events string   `json:"events"` // the history file, appended to
	// Delay is each record's processing time, so that the queue is still
	// busy when the faults come.
	Delay time.Duration `json:"delay"`
}

func (s shareConsumerSpec) process(output *os.File) *verify.Process {
	spec, _ := json.Marshal(s)
	return &verify.Process{
		Path: os.Args[0], Args: []string{"-test.run=^$"},
		Env:    []string{shareConsumerEnv + "=" + string(spec)},
		Ready:  func(context.Context) error { return nil },
		Output: output,
	}
}

// c10Action is what a consumer does with a delivery: poison records always
// fail, some are rejected once, some released once, the rest accepted.
func c10Action(key int, count int32) kgo.AckStatus {
	switch {
	case key%20 == 7:
		return kgo.AckRelease
	case key%20 == 13 && count == 1:
		return kgo.AckReject
	case key%10 == 3 && count == 1:
		return kgo.AckRelease
	}
	return kgo.AckAccept
}

var ackNames = map[kgo.AckStatus]string{kgo.AckAccept: verify.AckAccept, kgo.AckRelease: verify.AckRelease, kgo.AckReject: verify.AckReject}

// runShareConsumer is one share consumer process: poll, act, flush, log.
func runShareConsumer(specJSON string) int {
	var spec shareConsumerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f, err := os.OpenFile(spec.Events, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer f.Close()
	member := fmt.Sprintf("%s-%d", spec.Name, os.Getpid())
	emit := func(e verify.ShareEvent) {
		e.Member = member
		b, _ := json.Marshal(e)
		f.Write(append(b, '\n')) // one write per event: a kill tears at most the last line
	}
	var mu sync.Mutex
	results := map[int32]error{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(spec.Seeds...), kgo.ClientID(spec.Name), kgo.ShareGroup(c10Group), kgo.ConsumeTopics(c10Topic),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.AlwaysRetryEOF(),
		kgo.ShareAckCallback(func(_ *kgo.Client, rs kgo.ShareAckResults) {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				if r.Err != nil || results[r.Partition] == nil {
					results[r.Partition] = r.Err
				}
			}
		}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollRecords(pctx, 50)
		cancel()
		type acked struct {
			key       string
			partition int32
			ack       string
		}
		var sent []acked
		fs.EachRecord(func(r *kgo.Record) {
			emit(verify.ShareEvent{Time: time.Now().UnixNano(), Kind: verify.ShareDeliver, Key: string(r.Key), Count: r.DeliveryCount(),
				Deadline: r.AcquisitionDeadline().UnixNano()})
			time.Sleep(spec.Delay)
			k, _ := strconv.Atoi(string(r.Key))
			a := c10Action(k, r.DeliveryCount())
			emit(verify.ShareEvent{Time: time.Now().UnixNano(), Kind: verify.ShareAck, Key: string(r.Key), Ack: ackNames[a]})
			r.Ack(a)
			sent = append(sent, acked{string(r.Key), r.Partition, ackNames[a]})
		})
		if len(sent) == 0 {
			continue
		}
		mu.Lock()
		clear(results)
		mu.Unlock()
		fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cl.FlushAcks(fctx)
		fcancel()
		if err != nil {
			continue
		}
		mu.Lock()
		for _, s := range sent {
			if err, ok := results[s.partition]; ok && err == nil {
				emit(verify.ShareEvent{Time: time.Now().UnixNano(), Kind: verify.ShareAcked, Key: s.key, Ack: s.ack})
			}
		}
		mu.Unlock()
	}
	cl.Close() // graceful: releases what it still holds
	return 0
}

// c10Setup creates the topics, the group's configs and the records.
func c10Setup(t *testing.T, seeds []string, n int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	adm := kadm.NewClient(cl)
	if resp, err := adm.CreateTopic(ctx, 4, 1, nil, c10Topic); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, c10Group
	for _, kv := range [][2]string{
		{"share.auto.offset.reset", "earliest"}, {"share.record.lock.duration.ms", strconv.Itoa(int(c10Lock.Milliseconds()))},
		{"share.delivery.count.limit", strconv.Itoa(c10Limit)}, {"errors.deadletterqueue.topic.name", c10DLQ},
		// Killed consumers' members go away soon, and live ones hear of
		// the new assignment soon.
		{"share.session.timeout.ms", "6000"}, {"share.heartbeat.interval.ms", "1000"},
	} {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = kv[0], kmsg.StringPtr(kv[1])
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	if resp, err := req.RequestWith(ctx, cl); err != nil || resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("group configs: %v %v", resp, err)
	}
	keys := make([]string, n)
	recs := make([]*kgo.Record, n)
	for i := range n {
		keys[i] = strconv.Itoa(i)
		recs[i] = &kgo.Record{Topic: c10Topic, Key: []byte(keys[i]), Value: []byte(keys[i])}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// c10Drained reports whether the group's start offset reached the end of
// every partition (every record acknowledged or archived).
func c10Drained(ctx context.Context, adm *kadm.Client) bool {
	offs, err := adm.DescribeShareGroupOffsets(ctx, c10Group)
	if err != nil || offs[c10Group].Err != nil {
		return false
	}
	ends, err := adm.ListEndOffsets(ctx, c10Topic)
	if err != nil {
		return false
	}
	done := true
	ends.Each(func(o kadm.ListedOffset) {
		so, ok := offs[c10Group].Offsets.Lookup(c10Topic, o.Partition)
		done = done && ok && so.StartOffset == o.Offset
	})
	return done
}

// c10DeadLetters counts, per source key, the records of the dead-letter
// topic (mapping the headers' partition and offset back to keys).
func c10DeadLetters(t *testing.T, seeds []string) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keyAt := map[string]string{}
	drain(t, ctx, seeds, adm, c10Topic, func(r *kgo.Record) { keyAt[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = string(r.Key) })
	out := map[string]int{}
	drain(t, ctx, seeds, adm, c10DLQ, func(r *kgo.Record) {
		var p, o string
		for _, h := range r.Headers {
			switch h.Key {
			case "__dlq.errors.partition":
				p = string(h.Value)
			case "__dlq.errors.offset":
				o = string(h.Value)
			}
		}
		out[keyAt[p+"/"+o]]++
	})
	return out
}

// drain reads a topic from its start to its current end.
func drain(t *testing.T, ctx context.Context, seeds []string, adm *kadm.Client, topic string, fn func(*kgo.Record)) {
	t.Helper()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		if ends == nil {
			return
		}
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for len(want) > 0 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			fn(r)
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	if len(want) > 0 {
		t.Fatalf("could not read all of %s: %v left", topic, want)
	}
}

// c10Run runs the consumers under faults; kill kills (and restarts) the
// broker and returns when it serves again.
func c10Run(t *testing.T, seeds []string, n int, window time.Duration, kill func() string) {
	seed := verifytest.Seed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 10))
	keys := c10Setup(t, seeds, n)
	dir := t.TempDir()
	var testEvents []verify.ShareEvent
	procs := make([]*verify.Process, c10Members)
	for i := range procs {
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("consumer-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		defer log.Close()
		procs[i] = shareConsumerSpec{Seeds: seeds, Name: fmt.Sprintf("c%d", i), Events: filepath.Join(dir, fmt.Sprintf("events-%d.jsonl", i)),
			Delay: window * c10Members / time.Duration(n) / 2}.process(log)
		p := procs[i]
		t.Cleanup(func() { _ = p.Kill() })
		if err := p.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	consumerKills, brokerKills := 0, 0
	end := time.Now().Add(window)
	nextBroker := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(800+rng.IntN(1200)) * time.Millisecond)
		if time.Now().After(nextBroker) {
			what := kill()
			testEvents = append(testEvents, verify.ShareEvent{Time: time.Now().UnixNano(), Kind: verify.ShareBrokerDown})
			brokerKills++
			t.Logf("%s", what)
			nextBroker = time.Now().Add(time.Duration(3000+rng.IntN(3000)) * time.Millisecond)
			continue
		}
		i := rng.IntN(c10Members)
		p := procs[i]
		member := fmt.Sprintf("c%d-%d", i, p.Pid())
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		testEvents = append(testEvents, verify.ShareEvent{Time: time.Now().UnixNano(), Kind: verify.ShareMemberDown, Member: member})
		consumerKills++
		if err := p.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Faults over: the consumers finish the queue.
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Soak(90*time.Second, 5*time.Minute))
	defer cancel()
	for !c10Drained(ctx, adm) {
		if ctx.Err() != nil {
			t.Fatalf("the queue did not drain after the faults stopped (logs in %s)", dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // pending dead letters are written within a second
	for _, p := range procs {
		_ = p.Stop(10 * time.Second)
	}
	events := testEvents
	for i := range procs {
		f, err := os.Open(filepath.Join(dir, fmt.Sprintf("events-%d.jsonl", i)))
		if err != nil {
			t.Fatal(err)
		}
		evs, err := verify.ReadShareEvents(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, evs...)
	}
	res := verify.CheckShare(events, verify.ShareOutcome{Produced: keys, DeadLettered: c10DeadLetters(t, seeds), LockDuration: c10Lock})
	t.Logf("consumer kills %d, broker kills %d: %v", consumerKills, brokerKills, res)
	if !res.Valid {
		t.Errorf("share history invalid: %v (events in %s)", res, dir)
		keepDirs(t, dir)
	}
	if consumerKills < 3 || brokerKills < 1 || res.Redeliveries == 0 || res.DeadLettered == 0 {
		t.Errorf("too few faults or outcomes to prove anything: %d consumer kills, %d broker kills, %v", consumerKills, brokerKills, res)
	}
}

// TestC10ShareQueueSurvivesKill9: consumers and the broker (a child
// process) are SIGKILLed.
func TestC10ShareQueueSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("C10 runs for about 30 seconds")
	}
	dataDir, logDir := t.TempDir(), t.TempDir()
	addr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	brokerLog, err := os.Create(filepath.Join(logDir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer brokerLog.Close()
	brk := brokerkit.Child{Addr: addr, DataDir: dataDir, Properties: c10Properties}.Process(brokerLog)
	t.Cleanup(func() { _ = brk.Kill() })
	if err := brk.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c10Run(t, []string{addr}, testkit.Soak(1500, 50000), testkit.Soak(12*time.Second, 10*time.Minute), func() string {
		if err := brk.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := brk.Start(context.Background()); err != nil {
			t.Fatalf("restart broker: %v (log in %s)", err, logDir)
		}
		return "SIGKILL broker"
	})
}

// TestC10ShareQueueSurvivesPowerLoss: the broker runs in process on a
// crash-simulating file system and loses everything not fsynced; the
// consumers (child processes) are SIGKILLed too.
func TestC10ShareQueueSurvivesPowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("C10 runs for about 30 seconds")
	}
	mem := logstore.NewMemFS()
	opts := []broker.Option{brokerkit.WithFS(mem)}
	for k, v := range c10Properties {
		opts = append(opts, broker.WithProperty(k, v))
	}
	b := brokertest.Run(t, opts...)
	c10Run(t, []string{b.Addr()}, testkit.Soak(1500, 50000), testkit.Soak(12*time.Second, 10*time.Minute), func() string {
		mem = brokerkit.CrashRestart(t, b, mem, true)
		return "power loss"
	})
}
