package lab

// Scenario "aggregate" keeps a running total per customer, the stream
// processing case where a duplicate is a silent double count: the report
// shows the computed total beside the true total (each event in the input
// log once) and the drift between them. The totals live in the consumer's
// SQLite database, or, in the exactly-once mode, in the output topic, which
// is the state's changelog too.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"
)

// ScenarioAggregate is the running-total scenario.
const ScenarioAggregate = "aggregate"

func init() {
	registerScenario(&scenarioSpec{
		name:         ScenarioAggregate,
		effectColumn: "DOUBLE COUNTS",
		twice:        "event counted twice",
		atomic:       "state, outputs and offsets",
		promises: map[Mode]string{
			ExactlyOnceTxn: "no drift: every acknowledged event counted exactly once (state, outputs and offsets in one Kafka transaction)",
		},
		columns: []column{
			{"TRUE TOTAL", func(m ModeResult) string { return fmt.Sprint(m.TrueTotal) }},
			{"COMPUTED", func(m ModeResult) string { return fmt.Sprint(m.ComputedTotal) }},
			{"DRIFT", func(m ModeResult) string { return fmt.Sprintf("%+d", m.Drift) }},
		},
		consumerDB: true,
		schema: []string{
			`CREATE TABLE IF NOT EXISTS totals (customer TEXT PRIMARY KEY, cents INTEGER NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS applied (event_id TEXT NOT NULL, customer TEXT NOT NULL, total INTEGER NOT NULL, at_ns INTEGER NOT NULL)`,
		},
		openSink:   func(r *run) (sink, error) { return totalsSink{filepath.Join(r.dir, "consumer.db")}, nil },
		readOutput: readTotals,
		fromInput:  trueTotal,
		apply: func(ctx context.Context, w *worker, e Event, _ string) error {
			return addToTotal(ctx, w, nil, e)
		},
		applyInTx:    addToTotal,
		newTransform: restoreTotals,
	})
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

// addToTotal adds e to its key's total and records the output (the new
// total) in tx, or in a transaction of its own when tx is nil: then nothing
// makes it atomic with the offset commit.
func addToTotal(ctx context.Context, w *worker, tx *sql.Tx, e Event) error {
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

// restoreTotals rebuilds the running totals from the committed output (the
// last total of each customer) and returns the transform that goes on from
// there.
func restoreTotals(ctx context.Context, w *worker) (func(Event) []byte, error) {
	vs, err := readCommitted(ctx, w.spec.Brokers, w.spec.Output, w.sec.Opts()...)
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
	return func(e Event) []byte {
		totals[e.Customer] += e.Cents
		v, _ := json.Marshal(Total{EventID: e.ID, Customer: e.Customer, Total: totals[e.Customer]})
		return v
	}, nil
}

// readTotals counts the totals in the committed output, each at the time the
// transaction that wrote it committed; the computed total is the sum of
// each customer's last total (the output is in offset order per partition,
// and a customer has one partition).
func readTotals(values [][]byte, committedAt map[string]time.Time, res *ModeResult) map[string][]time.Time {
	effects := map[string][]time.Time{}
	last := map[string]int64{}
	for _, v := range values {
		var t Total
		if json.Unmarshal(v, &t) == nil {
			effects[t.EventID] = append(effects[t.EventID], committedAt[t.EventID])
			last[t.Customer] = t.Total
		}
	}
	for _, t := range last {
		res.ComputedTotal += t
	}
	return effects
}

// trueTotal is the total of the input log with each event counted once.
func trueTotal(input []Event, res *ModeResult) {
	seen := map[string]bool{}
	res.TrueTotal = 0
	for _, e := range input {
		if !seen[e.ID] {
			seen[e.ID] = true
			res.TrueTotal += e.Cents
		}
	}
	res.Drift = res.ComputedTotal - res.TrueTotal
}

// totalsSink reads the consumer's applied events and totals from its
// database once the worker is done.
type totalsSink struct{ path string }

func (totalsSink) address() string       { return "" }
func (totalsSink) effected() (int, bool) { return 0, false }
func (totalsSink) close()                {}

// effects are the applied events, each at the time it was applied; the
// computed total is the sum of the totals table.
func (s totalsSink) effects(ctx context.Context, _ *run, res *ModeResult) (map[string][]time.Time, error) {
	db, err := sql.Open("sqlite", "file:"+s.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT event_id, at_ns FROM applied`)
	if err != nil {
		return nil, fmt.Errorf("read applied events: %w", err)
	}
	effects := map[string][]time.Time{}
	for rows.Next() {
		var id string
		var at int64
		if err := rows.Scan(&id, &at); err != nil {
			rows.Close()
			return nil, err
		}
		effects[id] = append(effects[id], time.Unix(0, at))
	}
	rows.Close()
	return effects, db.QueryRowContext(ctx, `SELECT coalesce(sum(cents), 0) FROM totals`).Scan(&res.ComputedTotal)
}
