package lab

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/internal/verify"
)

// Run runs every mode of cfg.Scenario in turn and returns the report. An
// error means the lab itself could not run (no broker, no topic); a mode
// that breaks its promise is reported in the Report, not as an error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	if cfg.Scenario != ScenarioCharge && cfg.Scenario != ScenarioAggregate {
		return nil, fmt.Errorf("lab: unknown scenario %q (charge, aggregate)", cfg.Scenario)
	}
	if cfg.Worker.Path == "" {
		return nil, errors.New("lab: Config.Worker is required")
	}
	removeDir := false
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "idem-lab-")
		if err != nil {
			return nil, err
		}
		cfg.Dir, removeDir = d, true
	}
	rep := &Report{Scenario: cfg.Scenario, N: cfg.N, Seed: cfg.Seed, Started: time.Now().UTC()}
	start := time.Now()

	t := &target{cfg: &cfg}
	defer t.close()
	if len(cfg.Bootstrap) > 0 {
		t.brokers = cfg.Bootstrap
		rep.Target = "cluster at " + strings.Join(cfg.Bootstrap, ",")
		for _, f := range cfg.Faults {
			if f.needsBrokerProcess() {
				rep.Skipped = append(rep.Skipped, f)
			} else {
				rep.Faults = append(rep.Faults, f)
			}
		}
	} else {
		if cfg.Broker == nil {
			return nil, errors.New("lab: Config.Broker is required without Bootstrap")
		}
		if err := t.startBroker(ctx); err != nil {
			return nil, err
		}
		rep.Target = "idem broker (child process) at " + t.brokers[0]
		rep.Faults = slices.Clone(cfg.Faults)
	}
	txnOK, txnWhy := TransactionsAvailable(ctx, t.brokers)

	for i, m := range cfg.Modes {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lab: interrupted before mode %s: %w (files in %s)", m, err, cfg.Dir)
		}
		res := ModeResult{Mode: m, Faults: map[string]int{}}
		res.Promise, _ = promise(cfg.Scenario, m)
		switch {
		case m == ExactlyOnceTxn && !txnOK:
			res.Unavailable = "the target did not complete a probe transaction (" + txnWhy + ")"
		default:
			res.Available = true
			r, err := runMode(ctx, &cfg, t, rep.Faults, m, i, len(cfg.Modes))
			if err != nil {
				return nil, fmt.Errorf("lab: mode %s: %w (files in %s)", m, err, cfg.Dir)
			}
			res = r
		}
		if !res.Available {
			res.Verdict = "unavailable: " + res.Unavailable
		}
		rep.Modes = append(rep.Modes, res)
	}
	rep.Elapsed = Duration(time.Since(start))
	if rep.Broken() || rep.Incomplete() {
		rep.Artifacts = cfg.Dir // kept for inspection: histories, deliveries, databases, logs
	} else if removeDir {
		t.close()
		os.RemoveAll(cfg.Dir)
	}
	return rep, nil
}

// target is the cluster under test, and the proxies in front of it.
type target struct {
	cfg     *Config
	brokers []string
	proc    *verify.Process
	logFile *os.File

	mu      sync.Mutex
	proxies map[string]*verify.Proxy // upstream address → proxy
}

func (t *target) startBroker(ctx context.Context) error {
	addr, err := verify.FreeAddr()
	if err != nil {
		return err
	}
	dataDir := filepath.Join(t.cfg.Dir, "broker")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	t.logFile, err = os.Create(filepath.Join(t.cfg.Dir, "broker.log"))
	if err != nil {
		return err
	}
	c := t.cfg.Broker(dataDir, addr)
	t.proc = &verify.Process{Path: c.Path, Args: c.Args, Env: c.Env, Addr: addr, Output: t.logFile, StartTimeout: 30 * time.Second}
	if err := t.proc.Start(ctx); err != nil {
		return fmt.Errorf("lab: start broker: %w (log in %s)", err, t.logFile.Name())
	}
	t.brokers = []string{addr}
	return nil
}

// dial routes every connection the producer makes through a proxy for the
// address it asked for, so that faults hit whichever broker it talks to.
func (t *target) dial(ctx context.Context, network, host string) (net.Conn, error) {
	p, err := t.proxyFor(host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, p.Addr())
}

// proxyFor returns the proxy in front of host, starting it if needed.
func (t *target) proxyFor(host string) (*verify.Proxy, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.proxies == nil {
		t.proxies = map[string]*verify.Proxy{}
	}
	p := t.proxies[host]
	if p == nil {
		var err error
		if p, err = verify.NewProxy(host); err != nil {
			return nil, err
		}
		t.proxies[host] = p
	}
	return p, nil
}

// each applies f to every proxy, creating the seed brokers' first.
func (t *target) each(f func(*verify.Proxy)) {
	for _, b := range t.brokers {
		_, _ = t.proxyFor(b)
	}
	t.mu.Lock()
	ps := make([]*verify.Proxy, 0, len(t.proxies))
	for _, p := range t.proxies {
		ps = append(ps, p)
	}
	t.mu.Unlock()
	for _, p := range ps {
		f(p)
	}
}

func (t *target) close() {
	t.mu.Lock()
	ps := t.proxies
	t.proxies = nil
	t.mu.Unlock()
	for _, p := range ps {
		p.Close()
	}
	if t.proc != nil {
		_ = t.proc.Stop(10 * time.Second)
		t.proc = nil
	}
	if t.logFile != nil {
		t.logFile.Close()
		t.logFile = nil
	}
}

// admin runs f with an admin client, retrying while the broker restarts.
func (t *target) admin(ctx context.Context, f func(*kadm.Client) error) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(t.brokers...), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	return retry(ctx, func() error { return f(kadm.NewClient(cl)) })
}

// TransactionsAvailable commits one transaction to find out whether the
// target completes Kafka transactions: the exactly-once mode runs only if it
// does, and is reported unavailable (never emulated) if not; the reason is
// the second result.
func TransactionsAvailable(ctx context.Context, brokers []string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	topic := fmt.Sprintf("idem-lab-txn-probe-%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(topic), kgo.DefaultProduceTopic(topic),
		kgo.TransactionTimeout(10*time.Second), kgo.RequestRetries(3), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		return false, err.Error()
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		return false, "create probe topic: " + err.Error()
	}
	defer kadm.NewClient(cl).DeleteTopics(context.Background(), topic)
	if err := cl.BeginTransaction(); err != nil {
		return false, err.Error()
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("probe")}).FirstErr(); err != nil {
		_ = cl.EndTransaction(ctx, kgo.TryAbort)
		return false, "transactional produce: " + err.Error()
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return false, "commit: " + err.Error()
	}
	return true, ""
}

// plan is the seeded fault plan of a run: the same for every mode, keyed by
// event index (producer faults) and delivery count (consumer crashes), so
// that the modes face the same trouble at the same points.
type plan struct {
	lostAck    map[int]bool
	ackTimeout map[int]bool
	kill       map[int]time.Duration // event index → down time
	pause      map[int]time.Duration // event index → pause length
	crashes    []int                 // incarnation k crashes at its crashes[k]-th delivery
}

// Timeouts of the producer and the faults that must exceed them.
const (
	produceTimeout  = 800 * time.Millisecond // ProduceRequestTimeout; the client waits this + the overhead
	timeoutOverhead = 700 * time.Millisecond
	ackDelay        = 2 * time.Second // > produceTimeout + timeoutOverhead
)

func makePlan(seed int64, n int, faults []Fault) plan {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x243f6a8885a308d3))
	pick := func(count int) map[int]bool {
		m := map[int]bool{}
		lo, hi := n/10, max(n/10+1, n*9/10)
		for range count {
			m[lo+rng.IntN(hi-lo)] = true
		}
		return m
	}
	has := func(f Fault) bool { return slices.Contains(faults, f) }
	p := plan{lostAck: map[int]bool{}, ackTimeout: map[int]bool{}, kill: map[int]time.Duration{}, pause: map[int]time.Duration{}}
	if has(FaultLostAck) {
		p.lostAck = pick(min(10, max(1, n/20)))
	}
	if has(FaultAckTimeout) {
		p.ackTimeout = pick(min(3, max(1, n/100)))
	}
	if has(FaultBrokerKill) {
		for i := range pick(min(2, max(1, n/250))) {
			p.kill[i] = time.Duration(200+rng.IntN(600)) * time.Millisecond
		}
	}
	if has(FaultPause) {
		for i := range pick(1) {
			p.pause[i] = time.Duration(1800+rng.IntN(700)) * time.Millisecond
		}
	}
	if has(FaultConsumerCrash) {
		k := min(5, max(1, n/40))
		for range k {
			// Early in an incarnation, so that it is reached even when an
			// earlier incarnation failed for another reason (a broker kill)
			// and left few events to consume.
			p.crashes = append(p.crashes, 1+rng.IntN(max(1, n/(4*k))))
		}
	}
	return p
}

// run is one mode's bookkeeping.
type run struct {
	cfg    *Config
	t      *target
	mode   Mode
	dir    string
	topic  string
	output string
	group  string
	gw     *Gateway
	rec    *verify.Recorder

	mu       sync.Mutex
	faults   map[string]int
	faultLog []string
	sentAt   map[string]time.Time
	events   map[string]Event
}

// count records one injected fault, in the counts and in the fault log.
func (r *run) count(f string, detail string) {
	r.mu.Lock()
	r.faults[f]++
	r.faultLog = append(r.faultLog, fmt.Sprintf("%s %-15s %s", time.Now().UTC().Format("15:04:05.000"), f, detail))
	r.mu.Unlock()
}

func runMode(ctx context.Context, cfg *Config, t *target, faults []Fault, m Mode, idx, total int) (ModeResult, error) {
	res := ModeResult{Mode: m, Available: true, Faults: map[string]int{}}
	var judge func(ModeResult) bool
	res.Promise, judge = promise(cfg.Scenario, m)
	name := fmt.Sprintf("%s-%s-%d-%d", cfg.Scenario, m, cfg.Seed, time.Now().UnixNano()%1e6)
	r := &run{cfg: cfg, t: t, mode: m, dir: filepath.Join(cfg.Dir, string(m)),
		topic: "idem-lab-" + name, output: "idem-lab-" + name + "-out", group: "idem-lab-" + name,
		rec: verify.NewRecorder(), faults: map[string]int{}, sentAt: map[string]time.Time{}, events: map[string]Event{}}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return res, err
	}
	if err := t.admin(ctx, func(adm *kadm.Client) error {
		for _, topic := range []string{r.topic, r.output} {
			resp, err := adm.CreateTopic(ctx, cfg.Partitions, -1, nil, topic)
			if err == nil {
				err = resp.Err
			}
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				return err
			}
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("create topics: %w", err)
	}
	if cfg.Scenario == ScenarioCharge && m != ExactlyOnceTxn {
		gw, err := StartGateway()
		if err != nil {
			return res, err
		}
		defer gw.Close()
		r.gw = gw
	}
	p := makePlan(cfg.Seed, cfg.N, faults)

	deadline := time.Now().Add(cfg.Duration)
	mctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	var wg sync.WaitGroup
	workerDone := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		workerDone <- r.supervise(mctx, p)
	}()

	progressStop := make(chan struct{})
	if cfg.Progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-progressStop:
					return
				case <-tick.C:
					sent, effected := r.progress()
					cfg.Progress(Progress{Mode: m, ModeNum: idx + 1, Modes: total, Sent: sent, Effected: effected, N: cfg.N})
				}
			}
		}()
	}

	produceErr := r.produce(mctx, p)
	var workerErr error
	if produceErr == nil {
		produceErr = r.writeEnd(mctx)
	}
	if produceErr != nil {
		cancel()
	}
	workerErr = <-workerDone
	close(progressStop)
	wg.Wait()
	if produceErr != nil && ctx.Err() == nil && !errors.Is(produceErr, context.DeadlineExceeded) {
		return res, produceErr
	}

	res.Complete = workerErr == nil && produceErr == nil
	if err := r.measure(ctx, &res); err != nil {
		return res, err
	}
	r.mu.Lock()
	for k, v := range r.faults {
		res.Faults[k] = v
	}
	r.mu.Unlock()
	switch {
	case !res.Complete:
		why := "the consumer did not settle every event within " + cfg.Duration.String()
		if workerErr != nil {
			why += " (" + workerErr.Error() + ")"
		}
		if produceErr != nil {
			why = "the producer did not finish within " + cfg.Duration.String() + " (" + produceErr.Error() + ")"
		}
		res.Verdict = "NOT MEASURED: " + why
	default:
		kept := judge(res)
		res.Kept = &kept
		if kept {
			res.Verdict = "kept"
		} else {
			res.Verdict = "BROKEN"
		}
	}
	if res.Kept != nil && *res.Kept && len(cfg.Bootstrap) > 0 {
		// Leave someone else's cluster as it was; a broken run keeps its
		// topics as evidence.
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = t.admin(dctx, func(adm *kadm.Client) error {
			_, err := adm.DeleteTopics(dctx, r.topic, r.output)
			return err
		})
		cancel()
	}
	if res.Kept == nil || !*res.Kept {
		// The evidence to replay the run: the producer's history, the
		// fault log and the seed (the plan is a function of seed and N).
		f, err := os.Create(filepath.Join(r.dir, "history.jsonl"))
		if err == nil {
			_ = r.rec.History().WriteJSONL(f)
			f.Close()
		}
		r.mu.Lock()
		fs := "none"
		if len(faults) > 0 {
			fs = strings.ReplaceAll(joinFaults(faults), " ", "")
		}
		fl := fmt.Sprintf("replay: idem lab --scenario %s --mode %s -n %d --seed %d --faults %s\n%s\n",
			cfg.Scenario, m, cfg.N, cfg.Seed, fs, strings.Join(r.faultLog, "\n"))
		r.mu.Unlock()
		_ = os.WriteFile(filepath.Join(r.dir, "faults.log"), []byte(fl), 0o644)
	}
	return res, nil
}

func (r *run) progress() (sent, effected int) {
	r.mu.Lock()
	sent = len(r.sentAt)
	r.mu.Unlock()
	if r.gw != nil {
		effected = len(r.gw.Stats().Charges)
	} else {
		effected = countLines(filepath.Join(r.dir, "deliveries.jsonl"))
	}
	return sent, min(effected, sent)
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// producerOpts are each mode's producer settings: what the mode's name
// promises the producer does.
func (r *run) producerOpts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(r.t.brokers...),
		kgo.Dialer(r.t.dial),
		kgo.DefaultProduceTopic(r.topic),
		kgo.ProduceRequestTimeout(produceTimeout),
		kgo.RequestTimeoutOverhead(timeoutOverhead),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
		kgo.ProducerLinger(0),
	}
	switch r.mode {
	case AtMostOnce:
		// One try, leader ack: never a duplicate from the producer.
		return append(opts, kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.LeaderAck()), kgo.RecordRetries(0), kgo.RecordDeliveryTimeout(5*time.Second))
	case ExactlyOnceTxn:
		// The idempotent producer: retries never duplicate in the log.
		return append(opts, kgo.RecordDeliveryTimeout(60*time.Second))
	}
	// Retry until acknowledged, acks=all, no idempotence: a lost ack
	// becomes a duplicate in the log, the textbook at-least-once producer.
	return append(opts, kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(60*time.Second))
}

// produce sends the N events one at a time, arming the plan's faults before
// the events they belong to.
func (r *run) produce(ctx context.Context, p plan) error {
	cl, err := kgo.NewClient(r.producerOpts()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var bg sync.WaitGroup
	defer bg.Wait() // a kill or pause in progress finishes (and heals) before the mode ends
	for i := range r.cfg.N {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.lostAck[i] && r.cfg.Break == BreakBrokerDuplicates {
			r.t.each(func(px *verify.Proxy) {
				px.Add(verify.Rule{Kind: verify.FaultDuplicateProduce, APIKey: verify.APIProduce, Count: 1})
			})
			r.count("broken-broker", fmt.Sprintf("produce of event %d replayed without its producer id", i))
		} else if p.lostAck[i] {
			r.t.each(func(px *verify.Proxy) {
				px.Add(verify.Rule{Kind: verify.FaultDropResponse, APIKey: verify.APIProduce, Count: 1})
			})
			r.count(string(FaultLostAck), fmt.Sprintf("response to the produce of event %d dropped", i))
		}
		if p.ackTimeout[i] {
			r.t.each(func(px *verify.Proxy) {
				px.Add(verify.Rule{Kind: verify.FaultDelayResponse, APIKey: verify.APIProduce, Delay: ackDelay, Count: 1})
			})
			r.count(string(FaultAckTimeout), fmt.Sprintf("response to the produce of event %d delayed %v", i, ackDelay))
		}
		if down, ok := p.kill[i]; ok && r.t.proc != nil {
			bg.Add(1)
			go func() {
				defer bg.Done()
				r.killBroker(down)
			}()
		}
		if d, ok := p.pause[i]; ok && r.t.proc != nil {
			bg.Add(1)
			go func() {
				defer bg.Done()
				r.pauseBroker(d)
			}()
		}
		e := Event{ID: fmt.Sprintf("evt-%d", i), Customer: fmt.Sprintf("cus_%02d", i%r.cfg.Customers), Cents: int64(100 + (i*37)%900)}
		now := time.Now()
		e.SentNs = now.UnixNano()
		r.mu.Lock()
		r.sentAt[e.ID] = now
		r.events[e.ID] = e
		r.mu.Unlock()
		v, _ := json.Marshal(e)
		rec := &kgo.Record{Key: []byte(e.Customer), Value: v, Headers: []kgo.RecordHeader{{Key: dedupe.DefaultKeyHeader, Value: []byte(e.ID)}}}
		r.rec.Invoke(0, verify.FSend, verify.Record{Value: e.ID, Partition: -1, Offset: -1})
		got, err := cl.ProduceSync(ctx, rec).First()
		if err != nil {
			r.rec.Complete(0, verify.SendOutcome(err), verify.FSend, verify.Record{Value: e.ID, Partition: -1, Offset: -1}, err)
			continue
		}
		r.rec.Complete(0, verify.OK, verify.FSend, verify.Record{Value: e.ID, Partition: got.Partition, Offset: got.Offset}, nil)
	}
	return nil
}

func (r *run) killBroker(down time.Duration) {
	proc := r.t.proc
	r.count(string(FaultBrokerKill), fmt.Sprintf("SIGKILL pid %d, down %v", proc.Pid(), down))
	r.cfg.Logf("lab: %s: SIGKILL broker pid %d, down %v", r.mode, proc.Pid(), down)
	_ = proc.Kill()
	time.Sleep(down)
	if err := retry(context.Background(), func() error { return proc.Start(context.Background()) }); err != nil {
		r.cfg.Logf("lab: %s: broker restart failed: %v", r.mode, err)
	}
}

func (r *run) pauseBroker(d time.Duration) {
	pid := r.t.proc.Pid()
	if pid == 0 {
		return
	}
	r.count(string(FaultPause), fmt.Sprintf("SIGSTOP pid %d for %v", pid, d))
	r.cfg.Logf("lab: %s: SIGSTOP broker pid %d for %v", r.mode, pid, d)
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	time.Sleep(d)
	_ = syscall.Kill(pid, syscall.SIGCONT)
}

// writeEnd tells the worker where the input ends, once the producer is
// done. The high watermark is the durable end of the log, so with acks=1 it
// can trail the last acknowledgement for a moment: wait (a bounded time)
// until it covers every acknowledged offset. If it never does, the input
// check reports the acknowledged records the broker lost.
func (r *run) writeEnd(ctx context.Context) error {
	need := map[int32]int64{}
	for _, op := range r.rec.History() {
		if v, ok := op.Value.(verify.Record); ok && op.F == verify.FSend && op.Type == verify.OK {
			need[v.Partition] = max(need[v.Partition], v.Offset+1)
		}
	}
	end := map[int32]int64{}
	for attempt := 0; ; attempt++ {
		if err := r.t.admin(ctx, func(adm *kadm.Client) error {
			offs, err := adm.ListEndOffsets(ctx, r.topic)
			if err == nil {
				err = offs.Error()
			}
			if err != nil {
				return err
			}
			offs.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
			return nil
		}); err != nil {
			return fmt.Errorf("end offsets: %w", err)
		}
		covered := true
		for p, n := range need {
			if end[p] < n {
				covered = false
			}
		}
		if covered || attempt >= 100 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := json.Marshal(end)
	tmp := filepath.Join(r.dir, "end.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.dir, "end.json"))
}

// supervise runs worker incarnations until one finishes (exit 0): the
// planned crashes first, then restarts after unplanned exits, which the
// broker kills can cause. It returns nil once the worker finished.
func (r *run) supervise(ctx context.Context, p plan) error {
	logf, err := os.OpenFile(filepath.Join(r.dir, "worker.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	spec := WorkerSpec{
		Scenario: r.cfg.Scenario, Mode: r.mode, Brokers: r.t.brokers, Topic: r.topic, Output: r.output,
		Group: r.group, TxnID: r.group, Deliveries: filepath.Join(r.dir, "deliveries.jsonl"),
		EndFile: filepath.Join(r.dir, "end.json"), Break: r.cfg.Break,
	}
	if r.gw != nil {
		spec.Gateway = r.gw.URL()
	}
	if r.cfg.Break == BreakBrokerLosesRead {
		px, err := r.t.proxyFor(r.t.brokers[0])
		if err != nil {
			return err
		}
		spec.Via = px.Addr()
		px.Add(verify.Rule{Kind: verify.FaultDropFetchedBatch, APIKey: verify.APIFetch, Count: 1})
		r.count("broken-broker", "the first fetch response with two batches for a partition loses the first")
	}
	if r.mode == IdempotentConsumer || r.mode == OffsetsInDB || r.cfg.Scenario == ScenarioAggregate {
		spec.DB = filepath.Join(r.dir, "consumer.db")
	}
	failures, crashed := 0, 0
	for k := 0; ; k++ {
		// The plan's next crash stays armed until it has happened: an
		// incarnation that failed for another reason does not use it up.
		spec.CrashAfter = 0
		if crashed < len(p.crashes) {
			spec.CrashAfter = p.crashes[crashed]
		}
		b, _ := json.Marshal(spec)
		cmd := exec.Command(r.cfg.Worker.Path, r.cfg.Worker.Args...)
		cmd.Env = append(append(os.Environ(), r.cfg.Worker.Env...), WorkerEnv+"="+string(b))
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = childAttr()
		fmt.Fprintf(logf, "--- incarnation %d (crash after delivery %d)\n", k, spec.CrashAfter)
		if err := cmd.Start(); err != nil {
			return err
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var werr error
		select {
		case werr = <-exited:
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			return ctx.Err()
		}
		if werr == nil {
			return nil
		}
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL && spec.CrashAfter > 0 {
				r.count(string(FaultConsumerCrash), fmt.Sprintf("incarnation %d SIGKILLed itself at delivery %d", k, spec.CrashAfter))
				crashed++
				continue
			}
		}
		failures++
		fmt.Fprintf(logf, "--- incarnation %d failed: %v\n", k, werr)
		if failures > 30 {
			return fmt.Errorf("worker failed %d times, last: %v", failures, werr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// measure fills res from the producer's history, the deliveries file, the
// gateway or the consumer's database or output topic, and a drain of the
// input topic.
func (r *run) measure(ctx context.Context, res *ModeResult) error {
	h := r.rec.History()
	acked := map[string]bool{}
	for _, op := range h {
		if op.F == verify.FSend && op.Type == verify.Invoke {
			res.Sent++
		}
		if op.F == verify.FSend && op.Type == verify.OK {
			acked[op.Value.(verify.Record).Value] = true
		}
	}
	res.Acked = len(acked)

	deliveries, committedAt, err := readDeliveries(filepath.Join(r.dir, "deliveries.jsonl"))
	if err != nil {
		return err
	}
	for _, n := range deliveries {
		res.DupDeliveries += max(0, n-1)
	}

	// effects: event id → the times its side effect happened.
	effects := map[string][]time.Time{}
	switch {
	case r.gw != nil:
		st := r.gw.Stats()
		effects = st.Charges
		// A customer is overcharged when the gateway took more than the
		// events it charged for add up to.
		owed := map[string]int64{}
		for id := range effects {
			if e, ok := r.events[id]; ok {
				owed[e.Customer] += e.Cents
			}
		}
		for c, cents := range st.Cents {
			if cents > owed[c] {
				res.Overcharged++
			}
		}
	case r.mode == ExactlyOnceTxn:
		rs, err := drainCommitted(ctx, r.t.brokers, r.output)
		if err != nil {
			return fmt.Errorf("read the ledger: %w", err)
		}
		last := map[string]int64{}
		for _, v := range rs { // in offset order per partition, and a customer has one partition
			var c Total // a Charge decodes into its event id and customer too
			if json.Unmarshal(v, &c) == nil {
				effects[c.EventID] = append(effects[c.EventID], committedAt[c.EventID])
				last[c.Customer] = c.Total
			}
		}
		for _, t := range last {
			res.ComputedTotal += t
		}
	default: // aggregate, from the consumer's database
		if err := r.readAggregate(ctx, effects, res); err != nil {
			return err
		}
	}
	var lat []time.Duration
	var first, last time.Time
	for id, at := range effects {
		res.DupEffects += max(0, len(at)-1)
		sent, ok := r.sentAt[id]
		if !ok || len(at) == 0 {
			continue
		}
		e := slices.MinFunc(at, func(a, b time.Time) int { return a.Compare(b) })
		if !e.IsZero() {
			lat = append(lat, e.Sub(sent))
			if e.After(last) {
				last = e
			}
		}
	}
	for id, sent := range r.sentAt {
		if first.IsZero() || sent.Before(first) {
			first = sent
		}
		if len(effects[id]) == 0 {
			if acked[id] {
				res.Lost++
			} else {
				res.LostUnacked++
			}
		}
	}
	if len(lat) > 0 && last.After(first) {
		res.Throughput = float64(len(lat)) / last.Sub(first).Seconds()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		res.P50 = Duration(lat[len(lat)*50/100])
		res.P99 = Duration(lat[min(len(lat)-1, len(lat)*99/100)])
	}

	// The broker's side: every acknowledged event is in the input topic.
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r.rec.Invoke(1, verify.FPoll, nil)
	rs, err := verify.Drain(dctx, r.t.brokers, r.topic)
	if err != nil {
		res.Log = "input topic not drained: " + err.Error()
		return nil
	}
	var read []verify.Record
	for _, x := range rs {
		var e Event
		if json.Unmarshal([]byte(x.Value), &e) == nil {
			read = append(read, verify.Record{Value: e.ID, Partition: x.Partition, Offset: x.Offset})
		}
	}
	r.rec.Complete(1, verify.OK, verify.FPoll, read, nil)
	set := verify.CheckSet(r.rec.History())
	res.LogOK = len(set.Lost) == 0 && len(set.Unexpected) == 0
	if r.mode == ExactlyOnceTxn {
		// Its producer is idempotent: a retry must never land twice.
		res.LogOK = res.LogOK && len(set.Duplicated) == 0
	}
	res.Log = fmt.Sprintf("%d acknowledged, %d in the log, %d lost by the broker, %d unexpected, %d written more than once",
		set.Acknowledged, set.Read, len(set.Lost), len(set.Unexpected), len(set.Duplicated))
	if r.cfg.Scenario == ScenarioAggregate {
		seen := map[string]bool{}
		res.TrueTotal = 0
		for _, x := range rs {
			var e Event
			if json.Unmarshal([]byte(x.Value), &e) == nil && !seen[e.ID] {
				seen[e.ID] = true
				res.TrueTotal += e.Cents
			}
		}
		res.Drift = res.ComputedTotal - res.TrueTotal
	}
	return nil
}

// readAggregate reads the consumer's applied events and totals.
func (r *run) readAggregate(ctx context.Context, effects map[string][]time.Time, res *ModeResult) error {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(r.dir, "consumer.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT event_id, at_ns FROM applied`)
	if err != nil {
		return fmt.Errorf("read applied events: %w", err)
	}
	for rows.Next() {
		var id string
		var at int64
		if err := rows.Scan(&id, &at); err != nil {
			rows.Close()
			return err
		}
		effects[id] = append(effects[id], time.Unix(0, at))
	}
	rows.Close()
	return db.QueryRowContext(ctx, `SELECT coalesce(sum(cents), 0) FROM totals`).Scan(&res.ComputedTotal)
}

// readDeliveries counts deliveries per event and the first commit time of
// each event (transactional mode), skipping a torn last line.
func readDeliveries(path string) (map[string]int, map[string]time.Time, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}, map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	n := map[string]int{}
	committed := map[string]time.Time{}
	for _, line := range strings.Split(string(b), "\n") {
		var l deliveryLine
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		if l.Event != "" {
			n[l.Event]++
		}
		for _, id := range l.Committed {
			if _, ok := committed[id]; !ok {
				committed[id] = time.Unix(0, l.T)
			}
		}
	}
	return n, committed, nil
}

// drainCommitted reads every committed record of topic (read_committed)
// up to its last stable offset.
func drainCommitted(ctx context.Context, brokers []string, topic string) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.KeepControlRecords())
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var ends kadm.ListedOffsets
	if err := retry(ctx, func() error {
		var err error
		ends, err = kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		return err
	}); err != nil {
		return nil, err
	}
	// Control records (transaction markers) are kept so that the position
	// reaches the end exactly even when a marker is the last thing in the
	// log; going quiet for 2 s also ends the read, as a safety net.
	var out [][]byte
	next := map[int32]int64{}
	reached := func() bool {
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			if next[o.Partition] < o.Offset {
				done = false
			}
		})
		return done
	}
	for !reached() {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %s: %w", topic, ctx.Err())
		}
		n := 0
		fs.EachRecord(func(rec *kgo.Record) {
			next[rec.Partition] = rec.Offset + 1
			n++
			if !rec.Attrs.IsControl() {
				out = append(out, rec.Value)
			}
		})
		if n == 0 && pctx.Err() != nil {
			break
		}
	}
	return out, nil
}
