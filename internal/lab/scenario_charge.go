package lab

// Scenario "charge" is the ChargeCustomer consumer of every delivery
// semantics guide: each event charges a customer at a payment gateway the
// lab runs (gateway.go), which counts every charge and honours an
// Idempotency-Key, so a double charge is observed where it happens. In the
// exactly-once mode the charge is a ledger record in the output topic
// instead, committed with the input offsets.

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"
)

// ScenarioCharge is the payment-gateway scenario.
const ScenarioCharge = "charge"

func init() {
	registerScenario(&scenarioSpec{
		name:         ScenarioCharge,
		effectColumn: "DOUBLE CHARGES",
		twice:        "customer charged twice",
		atomic:       "offsets, ids and effects",
		schema: []string{
			`CREATE TABLE IF NOT EXISTS charges (event_id TEXT NOT NULL, customer TEXT NOT NULL, cents INTEGER NOT NULL)`,
		},
		openSink: func(*run) (sink, error) {
			gw, err := StartGateway()
			if err != nil {
				return nil, err
			}
			return gatewaySink{gw}, nil
		},
		readOutput: readLedger,
		apply: func(ctx context.Context, w *worker, e Event, key string) error {
			return PostCharge(ctx, w.spec.Sink, chargeOf(e), key)
		},
		applyInTx: func(ctx context.Context, w *worker, tx *sql.Tx, e Event) error {
			if err := PostCharge(ctx, w.spec.Sink, chargeOf(e), e.ID); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO charges (event_id, customer, cents) VALUES (?, ?, ?)`, e.ID, e.Customer, e.Cents)
			return err
		},
		newTransform: func(context.Context, *worker) (func(Event) []byte, error) {
			return func(e Event) []byte {
				v, _ := json.Marshal(chargeOf(e))
				return v
			}, nil
		},
	})
}

func chargeOf(e Event) Charge { return Charge{EventID: e.ID, Customer: e.Customer, Cents: e.Cents} }

// readLedger counts the charges in the committed ledger, each at the time
// the transaction that wrote it committed.
func readLedger(values [][]byte, committedAt map[string]time.Time, _ *ModeResult) map[string][]time.Time {
	effects := map[string][]time.Time{}
	for _, v := range values {
		var c Charge
		if json.Unmarshal(v, &c) == nil {
			effects[c.EventID] = append(effects[c.EventID], committedAt[c.EventID])
		}
	}
	return effects
}

// gatewaySink counts the charges at the gateway.
type gatewaySink struct{ gw *Gateway }

func (s gatewaySink) address() string { return s.gw.URL() }

func (s gatewaySink) effected() (int, bool) { return len(s.gw.Stats().Charges), true }

func (s gatewaySink) close() { s.gw.Close() }

// effects are the gateway's charges. A customer is overcharged when the
// gateway took more than the events it charged for add up to.
func (s gatewaySink) effects(_ context.Context, r *run, res *ModeResult) (map[string][]time.Time, error) {
	st := s.gw.Stats()
	owed := map[string]int64{}
	for id := range st.Charges {
		if e, ok := r.events[id]; ok {
			owed[e.Customer] += e.Cents
		}
	}
	for c, cents := range st.Cents {
		if cents > owed[c] {
			res.Overcharged++
		}
	}
	return st.Charges, nil
}
