package lab

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/idem-dev/idem/internal/clientprops"
)

// WorkerEnv marks a worker child process. Its value is WorkerSpecOnStdin
// (the lab's children: their orders, a JSON WorkerSpec, are on stdin, since
// they may hold a password) or the JSON WorkerSpec itself.
const WorkerEnv = "IDEM_LAB_WORKER"

// WorkerSpecOnStdin as the value of WorkerEnv: the spec is on stdin.
const WorkerSpecOnStdin = "-"

// WorkerSpec tells one incarnation of a consumer process what to do.
type WorkerSpec struct {
	Scenario string   `json:"scenario"`
	Mode     Mode     `json:"mode"`
	Brokers  []string `json:"brokers"`
	Topic    string   `json:"topic"`
	Output   string   `json:"output,omitempty"` // the output topic, for modes whose effects are records in it
	Group    string   `json:"group"`
	TxnID    string   `json:"txn_id,omitempty"`
	Sink     string   `json:"sink,omitempty"` // where the scenario's effects go: the charge scenario's gateway URL
	DB       string   `json:"db,omitempty"`   // SQLite file
	// Deliveries is the file each delivery (and, for transactions, each
	// commit) is appended to, one JSON line per write(2), which a SIGKILL
	// cannot tear.
	Deliveries string `json:"deliveries"`
	// EndFile appears when the producer is done: the end offset of every
	// input partition. The worker exits 0 once it has settled everything
	// below them.
	EndFile string `json:"end_file"`
	// CrashAfter > 0 makes the worker SIGKILL itself at the crash point of
	// its mode on its CrashAfter-th delivery.
	CrashAfter int    `json:"crash_after,omitempty"`
	Break      string `json:"break,omitempty"`
	// Via, if set, is a proxy address every broker connection goes through
	// (the BreakBrokerLosesRead hook; one broker only). The proxy does the
	// TLS of ClientProps, if any.
	Via string `json:"via,omitempty"`
	// ClientProps are the client security properties (Config.ClientProps)
	// every client of the worker connects with.
	ClientProps map[string]string `json:"client_props,omitempty"`
}

// Event is the input record of every scenario (JSON value, id also in the
// dedupe.DefaultKeyHeader header).
type Event struct {
	ID       string `json:"id"`
	Customer string `json:"customer"` // the aggregation key in "aggregate"
	Cents    int64  `json:"cents"`
	SentNs   int64  `json:"sent_ns"`
}

// deliveryLine is one line of the deliveries file.
type deliveryLine struct {
	Event     string   `json:"e,omitempty"`
	Partition int32    `json:"p"`
	Offset    int64    `json:"o"`
	Committed []string `json:"c,omitempty"` // events whose effect committed (txn mode)
	T         int64    `json:"t"`
}

// WorkerMain runs a worker from the WorkerEnv environment variable and
// returns its exit code; `idem lab-worker` and the lab's tests call it in the
// child process.
func WorkerMain() int {
	if os.Getenv(RunnerEnv) != "" {
		return RunnerMain() // the admin API's lab run (runner.go)
	}
	var spec WorkerSpec
	b := []byte(os.Getenv(WorkerEnv))
	from := WorkerEnv
	if string(b) == WorkerSpecOnStdin {
		var err error
		if b, err = io.ReadAll(os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, "lab worker: read the spec on stdin:", err)
			return 2
		}
		from = "spec on stdin"
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		fmt.Fprintln(os.Stderr, "lab worker: bad", from+":", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := newWorker(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab worker:", err)
		return 1
	}
	defer w.close()
	if err := w.mode.consume(ctx, w); err != nil {
		fmt.Fprintln(os.Stderr, "lab worker:", err)
		return 1
	}
	return 0
}

// worker is one incarnation of the consumer process: the mode's consumer
// loop runs on it, and it keeps the bookkeeping every loop shares (the
// deliveries file, the crash point, how far the input is settled).
type worker struct {
	spec     WorkerSpec
	sec      clientprops.Security // how to connect (spec.ClientProps)
	mode     *modeSpec
	scenario *scenarioSpec
	out      *os.File
	db       *sqlitestore.Store
	n        int // deliveries in this incarnation
	// crashPending: the planned crash point was reached (see delivered).
	crashPending bool

	mu  sync.Mutex
	pos map[int32]int64 // next offset to settle, per input partition
	end map[int32]int64
}

// newWorker opens the deliveries file and, if the mode or the scenario
// keeps one, the consumer's database with the scenario's tables.
func newWorker(spec WorkerSpec) (*worker, error) {
	mode, ok := lookupMode(spec.Mode)
	if !ok {
		return nil, fmt.Errorf("unknown mode %q", spec.Mode)
	}
	scenario, ok := lookupScenario(spec.Scenario)
	if !ok {
		return nil, errUnknownScenario(spec.Scenario)
	}
	sec, err := clientprops.SecurityOf(spec.ClientProps)
	if err != nil {
		return nil, err
	}
	out, err := os.OpenFile(spec.Deliveries, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	w := &worker{spec: spec, sec: sec, mode: mode, scenario: scenario, out: out, pos: map[int32]int64{}}
	if spec.DB != "" {
		w.db, err = sqlitestore.Open(context.Background(), spec.DB, dedupe.Config{Consumer: "lab-" + string(spec.Mode), Retention: -1})
		if err != nil {
			out.Close()
			return nil, err
		}
		for _, ddl := range scenario.schema {
			if _, err := w.db.DB().Exec(ddl); err != nil {
				w.close()
				return nil, err
			}
		}
	}
	return w, nil
}

func (w *worker) close() {
	if w.db != nil {
		w.db.Close()
	}
	w.out.Close()
}

// emit appends one line with a single write.
func (w *worker) emit(l deliveryLine) {
	l.T = time.Now().UnixNano()
	b, _ := json.Marshal(l)
	_, _ = w.out.Write(append(b, '\n'))
}

// crash is the real thing: SIGKILL to itself, no deferred cleanup, no
// goodbye to the group, whatever was not committed is not committed.
func crash() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is delivered before this blocks for long
}

// delivered records a delivery and reports whether the planned crash point
// has been reached. The crash stays pending until it happens: a consumer
// that deduplicates skips the effect of a duplicate delivery, so its crash
// comes at the next delivery whose handler runs.
func (w *worker) delivered(r *kgo.Record, e Event) bool {
	w.n++
	w.emit(deliveryLine{Event: e.ID, Partition: r.Partition, Offset: r.Offset})
	if w.spec.CrashAfter > 0 && w.n == w.spec.CrashAfter {
		w.crashPending = true
	}
	return w.crashPending
}

// settled records that the consumer is finished with r (its effect done, or
// deliberately skipped); done compares these positions with the end.
func (w *worker) settled(r *kgo.Record) {
	w.mu.Lock()
	if r.Offset+1 > w.pos[r.Partition] {
		w.pos[r.Partition] = r.Offset + 1
	}
	w.mu.Unlock()
}

// done reports whether the producer finished and everything it wrote was settled.
func (w *worker) done() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.end == nil {
		b, err := os.ReadFile(w.spec.EndFile)
		if err != nil {
			return false
		}
		var end map[int32]int64
		if json.Unmarshal(b, &end) != nil {
			return false
		}
		w.end = end
	}
	for p, e := range w.end {
		if w.pos[p] < e {
			return false
		}
	}
	return true
}

// connOpts are the seed brokers and how to connect (TLS, SASL), then
// extra: the options of a worker's helper clients (an admin client, a
// dead-letter producer).
func (w *worker) connOpts(extra ...kgo.Opt) []kgo.Opt {
	return append(append([]kgo.Opt{kgo.SeedBrokers(w.spec.Brokers...)}, w.sec.Opts()...), extra...)
}

// clientOpts are the options every worker consumer shares; the group and
// topics are added by the caller (dedupe.Consumer adds its own).
func (w *worker) clientOpts() []kgo.Opt {
	conn := w.connOpts()
	if w.spec.Via != "" {
		// The proxy does the TLS, if any; SASL goes through it.
		conn = append([]kgo.Opt{kgo.SeedBrokers(w.spec.Brokers...),
			kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, w.spec.Via)
			})}, w.sec.SASLOpts()...)
	}
	return append(conn,
		// The same static member id in every incarnation: a restarted worker
		// takes over its predecessor's assignment at once instead of waiting
		// for the dead member's session to expire.
		kgo.InstanceID("lab-worker"),
		kgo.SessionTimeout(6*time.Second),
		kgo.RebalanceTimeout(10*time.Second),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
	)
}

func (w *worker) groupOpts() []kgo.Opt {
	return append(w.clientOpts(), kgo.ConsumeTopics(w.spec.Topic), kgo.ConsumerGroup(w.spec.Group))
}

// loadCommitted starts the positions at the group's committed offsets, so
// an incarnation that has nothing left to do knows it.
func (w *worker) loadCommitted(ctx context.Context, cl *kgo.Client) error {
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, w.spec.Group)
	if err != nil {
		return err
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == w.spec.Topic && o.Err == nil && o.At >= 0 {
			w.pos[o.Partition] = o.At
		}
	})
	return nil
}

// apply is the scenario's effect of e with nothing tying it to the offset
// commit (key "" = no idempotency key).
func (w *worker) apply(ctx context.Context, e Event, key string) error {
	return w.scenario.apply(ctx, w, e, key)
}

// applyInTx is the scenario's effect of e inside tx, the transaction that
// also records e as processed (and, for offsets-in-db, its offset). The
// planned crash comes after the effect and before that transaction commits.
func (w *worker) applyInTx(ctx context.Context, tx *sql.Tx, e Event) error {
	if err := w.scenario.applyInTx(ctx, w, tx, e); err != nil {
		return err
	}
	if w.crashPending {
		crash() // effect done, transaction (claim, offset) never commits
	}
	return nil
}

// handleRecord is what a mode that commits to the consumer group does with
// one delivered event. commit commits its offset; crashHere says the planned
// crash point was reached. Returning an error ends the incarnation.
type handleRecord func(ctx context.Context, w *worker, e Event, crashHere bool, commit func() error) error

// consumeCommitting is the consumer loop of the modes that commit offsets to
// the consumer group one record at a time, each placing its effect and its
// crash point around the commit in its own way (handle).
func (w *worker) consumeCommitting(ctx context.Context, handle handleRecord) error {
	cl, err := kgo.NewClient(append(w.groupOpts(), kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := retry(ctx, func() error { return w.loadCommitted(ctx, cl) }); err != nil {
		return err
	}
	for !w.done() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollRecords(pctx, 100)
		cancel()
		for _, r := range fs.Records() {
			var e Event
			if json.Unmarshal(r.Value, &e) != nil {
				w.settled(r)
				continue
			}
			crashHere := w.delivered(r, e)
			if err := handle(ctx, w, e, crashHere, func() error { return cl.CommitRecords(ctx, r) }); err != nil {
				return err
			}
			w.settled(r)
		}
		cl.AllowRebalance()
	}
	return nil
}

// retry runs f until it succeeds or ctx ends, for operations that must
// eventually happen (a database transaction, a committed-offsets lookup)
// while the broker is being killed around them. A refusal of the client's
// credentials or rights is returned at once: no retry cures it.
func retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; ; attempt++ {
		if err = f(); err == nil {
			return nil
		}
		if attempt >= 200 || refused(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// refused reports whether err is the cluster refusing the client: its
// credentials (SASL) or its rights (an authorizer's ACLs).
func refused(err error) bool {
	for _, e := range []error{kerr.SaslAuthenticationFailed, kerr.ClusterAuthorizationFailed, kerr.TopicAuthorizationFailed,
		kerr.GroupAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
