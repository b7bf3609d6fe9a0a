package lab

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
)

// WorkerEnv carries a worker's orders (JSON WorkerSpec) to the child process.
const WorkerEnv = "IDEM_LAB_WORKER"

// WorkerSpec tells one incarnation of a consumer process what to do.
type WorkerSpec struct {
	Scenario string   `json:"scenario"`
	Mode     Mode     `json:"mode"`
	Brokers  []string `json:"brokers"`
	Topic    string   `json:"topic"`
	Output   string   `json:"output,omitempty"` // exactly-once-txn: the ledger/totals topic
	Group    string   `json:"group"`
	TxnID    string   `json:"txn_id,omitempty"`
	Gateway  string   `json:"gateway,omitempty"`
	DB       string   `json:"db,omitempty"` // SQLite file
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
	// (the BreakBrokerLosesRead hook; one broker only).
	Via string `json:"via,omitempty"`
}

// Event is the input record of both scenarios (JSON value, id also in the
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
	var spec WorkerSpec
	if err := json.Unmarshal([]byte(os.Getenv(WorkerEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "lab worker: bad", WorkerEnv+":", err)
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
	if err := w.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "lab worker:", err)
		return 1
	}
	return 0
}

type worker struct {
	spec WorkerSpec
	out  *os.File
	db   *sqlitestore.Store
	n    int // deliveries in this incarnation
	// crashPending: the planned crash point was reached (see delivered).
	crashPending bool

	mu  sync.Mutex
	pos map[int32]int64 // next offset to settle, per input partition
	end map[int32]int64
}

func newWorker(spec WorkerSpec) (*worker, error) {
	out, err := os.OpenFile(spec.Deliveries, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	w := &worker{spec: spec, out: out, pos: map[int32]int64{}}
	if spec.DB != "" {
		w.db, err = sqlitestore.Open(context.Background(), spec.DB, dedupe.Config{Consumer: "lab-" + string(spec.Mode), Retention: -1})
		if err != nil {
			out.Close()
			return nil, err
		}
		for _, ddl := range []string{
			`CREATE TABLE IF NOT EXISTS charges (event_id TEXT NOT NULL, customer TEXT NOT NULL, cents INTEGER NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS totals (customer TEXT PRIMARY KEY, cents INTEGER NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS applied (event_id TEXT NOT NULL, customer TEXT NOT NULL, total INTEGER NOT NULL, at_ns INTEGER NOT NULL)`,
		} {
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

// clientOpts are the options every worker client shares; the group and
// topics are added by the caller (dedupe.Consumer adds its own).
func (w *worker) clientOpts() []kgo.Opt {
	var via []kgo.Opt
	if w.spec.Via != "" {
		via = append(via, kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, w.spec.Via)
		}))
	}
	return append(via,
		kgo.SeedBrokers(w.spec.Brokers...),
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

func (w *worker) run(ctx context.Context) error {
	switch w.spec.Mode {
	case OffsetsInDB:
		return w.runOffsetsInDB(ctx)
	case ExactlyOnceTxn:
		return w.runTxn(ctx)
	}
	return w.runGroup(ctx)
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

// runGroup is the consumer of the modes that commit offsets to the group:
// at-most-once, at-least-once and the idempotent consumer.
func (w *worker) runGroup(ctx context.Context) error {
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
			commit := func() error { return cl.CommitRecords(ctx, r) }
			switch w.spec.Mode {
			case AtMostOnce:
				// Commit first. If the commit fails the record is skipped:
				// processing it could not be undone if the commit had in
				// fact gone through.
				if err := commit(); err != nil {
					w.settled(r)
					continue
				}
				if crashHere {
					crash() // committed, effect never happens: lost
				}
				if err := w.effect(ctx, e, ""); err != nil {
					return err
				}
			case AtLeastOnce:
				if err := w.effect(ctx, e, ""); err != nil {
					return err
				}
				if crashHere {
					crash() // effect happened, commit never does: redelivered
				}
				_ = commit() // a failed commit means a redelivery later, which at-least-once allows
			case IdempotentConsumer:
				if err := w.idempotent(ctx, e, crashHere); err != nil {
					return err
				}
				_ = commit()
			}
			w.settled(r)
		}
		cl.AllowRebalance()
	}
	return nil
}

// effect is the side effect of one event without a database transaction:
// a charge (key "" = no idempotency key), or an update of the running total
// followed by nothing that would make it atomic with the offset commit.
func (w *worker) effect(ctx context.Context, e Event, key string) error {
	if w.spec.Scenario == ScenarioAggregate {
		return w.addToTotal(ctx, nil, e)
	}
	return PostCharge(ctx, w.spec.Gateway, Charge{EventID: e.ID, Customer: e.Customer, Cents: e.Cents}, key)
}

// addToTotal adds e to its key's total and records the output (the new
// total) in tx, or in a transaction of its own when tx is nil.
func (w *worker) addToTotal(ctx context.Context, tx *sql.Tx, e Event) error {
	own := tx == nil
	if own {
		var err error
		if tx, err = w.db.DB().BeginTx(ctx, nil); err != nil {
			return err
		}
		defer tx.Rollback()
	}
	var total int64
	err := tx.QueryRowContext(ctx, `INSERT INTO totals (customer, cents) VALUES (?, ?)
		ON CONFLICT (customer) DO UPDATE SET cents = cents + excluded.cents RETURNING cents`, e.Customer, e.Cents).Scan(&total)
	if err == nil {
		_, err = tx.ExecContext(ctx, `INSERT INTO applied (event_id, customer, total, at_ns) VALUES (?, ?, ?, ?)`, e.ID, e.Customer, total, time.Now().UnixNano())
	}
	if err == nil && own {
		err = tx.Commit()
	}
	return err
}

// idempotent is the textbook "processed ids" consumer done right: claim the
// event id, call the gateway with the id as its idempotency key, record the
// charge, all in one database transaction (dedupe.Process). A crash after
// the gateway call rolls the claim back; the redelivery calls the gateway
// again with the same key and the gateway replays instead of charging.
func (w *worker) idempotent(ctx context.Context, e Event, crashHere bool) error {
	if w.spec.Break == BreakSkipDedupe {
		// Deliberately broken: no processed-id check, no idempotency key.
		if err := w.effect(ctx, e, ""); err != nil {
			return err
		}
		if crashHere {
			crash()
		}
		return nil
	}
	return retry(ctx, func() error {
		_, err := w.db.Process(ctx, e.ID, func(ctx context.Context, tx *sql.Tx) error {
			return w.handle(ctx, tx, e)
		})
		return err
	})
}

// handle is the in-transaction handler of the database-backed modes.
func (w *worker) handle(ctx context.Context, tx *sql.Tx, e Event) error {
	if w.spec.Scenario == ScenarioAggregate {
		if err := w.addToTotal(ctx, tx, e); err != nil {
			return err
		}
	} else {
		if err := PostCharge(ctx, w.spec.Gateway, Charge{EventID: e.ID, Customer: e.Customer, Cents: e.Cents}, e.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO charges (event_id, customer, cents) VALUES (?, ?, ?)`, e.ID, e.Customer, e.Cents); err != nil {
			return err
		}
	}
	if w.crashPending {
		crash() // effect done, transaction (claim, offset) never commits
	}
	return nil
}

// runOffsetsInDB uses dedupe.Consumer: offsets, processed ids and the
// handler's writes commit in one SQLite transaction.
func (w *worker) runOffsetsInDB(ctx context.Context) error {
	rows, err := w.db.DB().QueryContext(ctx, `SELECT partition_id, next_offset FROM idem_processed_offsets WHERE consumer_group = ? AND topic = ?`, w.spec.Group, w.spec.Topic)
	if err == nil {
		for rows.Next() {
			var p int32
			var next int64
			if rows.Scan(&p, &next) == nil {
				w.pos[p] = next
			}
		}
		rows.Close()
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the watcher ends when ctx does
	wg.Add(1)
	go func() { // stop once everything is settled
		defer wg.Done()
		for !w.done() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		cancel()
	}()
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[*sql.Tx]{
		Store: w.db, Group: w.spec.Group, Topics: []string{w.spec.Topic},
		ClientOpts: w.clientOpts(),
		Retry:      dedupe.RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: func(ctx context.Context, tx *sql.Tx, r *kgo.Record) error {
			var e Event
			if err := json.Unmarshal(r.Value, &e); err != nil {
				return dedupe.Permanent(err)
			}
			w.delivered(r, e)
			return w.handle(ctx, tx, e)
		},
		OnResult: func(r *kgo.Record, res dedupe.Result) {
			if res.Status == dedupe.Duplicate {
				// Suppressed before the handler ran: still a delivery.
				var e Event
				if json.Unmarshal(r.Value, &e) == nil {
					w.delivered(r, e)
				}
			}
			w.settled(r)
		},
	})
	if err != nil {
		return err
	}
	err = c.Run(ctx)
	if w.done() {
		return nil
	}
	if err == nil {
		err = errors.New("consumer stopped before the end")
	}
	return err
}

// retry runs f until it succeeds or ctx ends, for operations that must
// eventually happen (a database transaction, a committed-offsets lookup)
// while the broker is being killed around them.
func retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; ; attempt++ {
		if err = f(); err == nil {
			return nil
		}
		if attempt >= 200 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Total is an output record of the transactional aggregate: the running
// total of a customer after an event. The output topic is the state's
// changelog too, so state, outputs and input offsets commit in one
// transaction.
type Total struct {
	EventID  string `json:"event_id"`
	Customer string `json:"customer"`
	Total    int64  `json:"total"`
}

// restoreTotals rebuilds the running totals from the committed output: the
// last total of each customer.
func restoreTotals(ctx context.Context, brokers []string, topic string) (map[string]int64, error) {
	vs, err := drainCommitted(ctx, brokers, topic)
	if err != nil {
		return nil, fmt.Errorf("restore totals: %w", err)
	}
	totals := map[string]int64{}
	for _, v := range vs {
		var t Total
		if json.Unmarshal(v, &t) == nil {
			totals[t.Customer] = t.Total
		}
	}
	return totals, nil
}

// runTxn is transactional consume-transform-produce (franz-go's
// GroupTransactSession): each polled batch's ledger records and its input
// offsets commit in one Kafka transaction. A crash before End leaves the
// transaction open; the next incarnation, with the same transactional id,
// fences it and it aborts, so its ledger records are never visible to a
// read_committed reader and its inputs are consumed again.
func (w *worker) runTxn(ctx context.Context) error {
	sess, err := kgo.NewGroupTransactSession(append(w.groupOpts(),
		kgo.TransactionalID(w.spec.TxnID),
		kgo.TransactionTimeout(10*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic(w.spec.Output),
	)...)
	if err != nil {
		return err
	}
	defer sess.Close()
	// Initialise the transactional producer id now: that fences the
	// previous incarnation and aborts the transaction it left open. Done
	// lazily (at the first produce), the stable offset fetch below would
	// wait for that very transaction until it timed out.
	if err := retry(ctx, func() error { _, _, err := sess.Client().ProducerID(ctx); return err }); err != nil {
		return err
	}
	if err := retry(ctx, func() error { return w.loadCommitted(ctx, sess.Client()) }); err != nil {
		return err
	}
	var totals map[string]int64 // aggregate: the running totals, restored from the output
	var outside *kgo.Client     // BreakOutputOutsideTxn: the plain producer
	if w.spec.Break == BreakOutputOutsideTxn {
		if outside, err = kgo.NewClient(kgo.SeedBrokers(w.spec.Brokers...), kgo.DefaultProduceTopic(w.spec.Output)); err != nil {
			return err
		}
		defer outside.Close()
	}
	for !w.done() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := sess.PollRecords(pctx, 100)
		cancel()
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return err
		}
		if w.spec.Scenario == ScenarioAggregate && totals == nil {
			// The first poll fetched the group's offsets with
			// RequireStable (franz-go always asks for it), so every earlier transaction is resolved and
			// the committed output is exactly the state those offsets
			// belong to.
			if totals, err = restoreTotals(ctx, w.spec.Brokers, w.spec.Output); err != nil {
				return err
			}
		}
		var ids []string
		for _, r := range recs {
			var e Event
			if json.Unmarshal(r.Value, &e) != nil {
				continue
			}
			crashHere := w.delivered(r, e)
			var v []byte
			if totals != nil {
				totals[e.Customer] += e.Cents
				v, _ = json.Marshal(Total{EventID: e.ID, Customer: e.Customer, Total: totals[e.Customer]})
			} else {
				v, _ = json.Marshal(Charge{EventID: e.ID, Customer: e.Customer, Cents: e.Cents})
			}
			out := &kgo.Record{Key: []byte(e.Customer), Value: v}
			if outside != nil {
				if err := outside.ProduceSync(ctx, out).FirstErr(); err != nil {
					return err
				}
			} else {
				sess.Produce(ctx, out, nil)
			}
			ids = append(ids, e.ID)
			if crashHere {
				_ = sess.Client().Flush(ctx) // the ledger records reach the broker, uncommitted
				crash()
			}
		}
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil {
			// Not retryable (franz-go's contract): this incarnation ends
			// and the next one fences whatever it left open.
			return fmt.Errorf("end transaction: %w", err)
		}
		if committed {
			w.emit(deliveryLine{Committed: ids})
			for _, r := range recs {
				w.settled(r)
			}
		} else {
			totals = nil // aborted: consumption rewinds, so does the state
		}
	}
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }
