package lab

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A delivery mode and a scenario are each one spec in one file
// (mode_*.go, scenario_*.go) that registers itself in init(), as the Kafka
// API keys do in internal/kafka/api. The table below says which modes each
// scenario compares. Everything else in the package (the run, the producer,
// the worker, the measurement, the report) reads the specs and never asks
// which mode or scenario it is running.

// table lists every scenario, in the order help and errors name them, with
// the modes it compares, in the order its report lists them. A new mode or
// scenario is a new file that registers its spec, plus its place here.
var table = []tableRow{
	{ScenarioCharge, []Mode{AtMostOnce, AtLeastOnce, IdempotentConsumer, ExactlyOnceTxn, OffsetsInDB}},
	{ScenarioAggregate, []Mode{AtLeastOnce, OffsetsInDB, ExactlyOnceTxn}},
	{ScenarioQueue, []Mode{AtLeastOnce, ShareGroup}},
	{ScenarioWebhook, []Mode{NaiveReceiver, DedupingReceiver, OrderedReceiver}},
}

type tableRow struct {
	scenario string
	modes    []Mode
}

// modeSpec is one delivery mode, whole: what its producer does, how its
// consumer consumes, what it promises, and where the lab counts its effects.
type modeSpec struct {
	mode     Mode
	producer producerSpec
	promise  promiseSpec
	// needsTransactions: the mode runs only if the target completes a probe
	// transaction; otherwise it is reported unavailable, never emulated.
	needsTransactions bool
	// consumerDB: the consumer keeps a SQLite database (processed ids,
	// offsets) whatever the scenario.
	consumerDB bool
	// effectsInOutput: the consumer's effect is a record of the output
	// topic, committed with its input offsets. The lab counts effects there,
	// through the scenario's output hooks, and opens no sink.
	effectsInOutput bool
	// consume is one worker incarnation's consumer loop, in the child
	// process. It returns nil once w.done(), and an error to be restarted.
	// Nothing about it has to be a consumer group: it reads the input topic
	// however the mode does, reports each delivery (w.delivered), reaches
	// the crash point of the plan (crash), and settles what it finished
	// (w.settled), which is how the lab knows it is done.
	consume func(ctx context.Context, w *worker) error
}

// producerSpec is what a mode's name promises about its producer.
type producerSpec struct {
	// idempotent: the broker deduplicates the producer's retries, so the
	// input topic must hold each acknowledged event exactly once (the input
	// check says so). acks is then all.
	idempotent bool
	// acks is the non-idempotent producer's required acknowledgement.
	acks kgo.Acks
	// oneTry: no retries, so a lost acknowledgement is a lost event and
	// never a duplicate.
	oneTry bool
}

// promiseSpec is a mode's promise in words and what it allows; the judge
// and the verdict are derived from the allowances, so they cannot disagree
// with each other.
type promiseSpec struct {
	// words states the promise in the terms of the scenario.
	words func(sc *scenarioSpec) string
	// mayLose and mayDuplicate are what the promise allows: a kept promise
	// still reports them, as what the mode costs.
	mayLose, mayDuplicate bool
	// inOrder: effects of one key happen in the order of its events.
	inOrder bool
}

// kept judges a measured result. A mode that allows neither loss nor
// duplicates also promises no drift; an in-order promise, no event out of
// order.
func (p promiseSpec) kept(r ModeResult) bool {
	exact := !p.mayLose && !p.mayDuplicate
	return (p.mayLose || r.Lost == 0) && (p.mayDuplicate || r.DupEffects == 0) && (!exact || r.Drift == 0) &&
		(!p.inOrder || r.OutOfOrder == 0)
}

// scenarioSpec is one scenario: what an event's side effect is, how a
// consumer performs it, where the lab counts it and how the report names it.
// The hooks a mode does not need may be nil (a scenario without the
// exactly-once mode has no output hooks); the table is checked for that.
type scenarioSpec struct {
	name string
	// Words of the table and the promises.
	effectColumn string // the table's header for duplicate effects: "DOUBLE CHARGES"
	twice        string // a duplicate effect, in a promise: "customer charged twice"
	atomic       string // what a one-transaction mode keeps together: "offsets, ids and effects"
	// promises words a mode's promise where the mode's own wording does
	// not fit the scenario.
	promises map[Mode]string
	// columns are shown after the duplicate-effects column.
	columns []column

	// consumerDB: the effect is written to the consumer's database, which
	// then has schema.
	consumerDB bool
	schema     []string

	// Lab side.
	// openSink starts where the effects happen and are counted, for the
	// modes whose effects are not in the output topic.
	openSink func(r *run) (sink, error)
	// readOutput turns the committed output topic into effects (event id
	// → the times its effect committed) and fills in what else it holds.
	readOutput func(values [][]byte, committedAt map[string]time.Time, res *ModeResult) map[string][]time.Time
	// fromInput fills in what the input topic, as the broker holds it,
	// says about the right answer (nil: nothing).
	fromInput func(input []Event, res *ModeResult)

	// Worker side.
	// apply performs e's effect with nothing tying it to the offset commit;
	// key, if not empty, is an idempotency key the effect's target
	// deduplicates on.
	apply func(ctx context.Context, w *worker, e Event, key string) error
	// applyInTx performs e's effect inside tx, the database transaction in
	// which the consumer also records e as processed.
	applyInTx func(ctx context.Context, w *worker, tx *sql.Tx, e Event) error
	// newTransform starts a transactional consumer's state from the
	// committed output and returns e's output record value.
	newTransform func(ctx context.Context, w *worker) (func(Event) []byte, error)
}

// lacksFor names a hook the scenario needs to run mode m and lacks ("" if
// none).
func (sc *scenarioSpec) lacksFor(m *modeSpec) string {
	switch {
	case m.effectsInOutput && (sc.readOutput == nil || sc.newTransform == nil):
		return "output hooks (readOutput, newTransform)"
	case !m.effectsInOutput && (sc.openSink == nil || sc.apply == nil):
		return "sink (openSink, apply)"
	case m.consumerDB && sc.applyInTx == nil:
		return "applyInTx"
	}
	return ""
}

// column is one scenario-specific column of the table.
type column struct {
	head  string
	value func(ModeResult) string
}

// promiseOf is mode m's promise in scenario sc's words.
func (sc *scenarioSpec) promiseOf(m *modeSpec) string {
	if s, ok := sc.promises[m.mode]; ok {
		return s
	}
	return m.promise.words(sc)
}

// sink is where a scenario's side effects happen outside Kafka, counted as
// they happen.
type sink interface {
	// address is where the worker reaches the sink ("" if it is the
	// worker's own database).
	address() string
	// effects returns event id → the times its effect happened, and fills
	// in the scenario's own numbers.
	effects(ctx context.Context, r *run, res *ModeResult) (map[string][]time.Time, error)
	// effected counts the events with an effect so far, if the sink knows.
	effected() (int, bool)
	close()
}

// specRegistry holds the registered specs and the table. It is sealed the
// first time it is read: registering after that would change nothing the
// lab already listed.
type specRegistry struct {
	mu        sync.Mutex
	sealed    bool
	table     []tableRow
	modes     map[Mode]*modeSpec
	scenarios map[string]*scenarioSpec
}

var registry = &specRegistry{table: table, modes: map[Mode]*modeSpec{}, scenarios: map[string]*scenarioSpec{}}

// registerMode adds a mode's spec; it is called from the mode's init().
// Registering a mode twice, or after the registry was read, is a
// programming error.
func registerMode(m *modeSpec) { registry.addMode(m) }

// registerScenario adds a scenario's spec; it is called from the
// scenario's init(), with the same rules as registerMode.
func registerScenario(s *scenarioSpec) { registry.addScenario(s) }

func (g *specRegistry) addMode(m *modeSpec) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.sealed:
		panic("lab: mode " + string(m.mode) + " registered after the registry was read")
	case m.mode == "" || m.consume == nil || m.promise.words == nil:
		panic(fmt.Sprintf("lab: incomplete mode spec %q", m.mode))
	case g.modes[m.mode] != nil:
		panic("lab: mode " + string(m.mode) + " registered twice")
	}
	g.modes[m.mode] = m
}

func (g *specRegistry) addScenario(s *scenarioSpec) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.sealed:
		panic("lab: scenario " + s.name + " registered after the registry was read")
	case s.name == "" || s.effectColumn == "":
		panic(fmt.Sprintf("lab: incomplete scenario spec %q", s.name))
	case g.scenarios[s.name] != nil:
		panic("lab: scenario " + s.name + " registered twice")
	}
	g.scenarios[s.name] = s
}

// seal checks the table against the registered specs the first time the
// registry is read, and panics if they disagree: a mode or scenario that was
// registered but not listed, listed but not registered, or listed where it
// cannot run.
func (g *specRegistry) seal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sealed {
		return
	}
	g.sealed = true
	listed := map[Mode]bool{}
	for _, row := range g.table {
		sc := g.scenarios[row.scenario]
		if sc == nil {
			panic("lab: the table lists scenario " + row.scenario + ", which is not registered")
		}
		for _, m := range row.modes {
			spec := g.modes[m]
			if spec == nil {
				panic("lab: the table lists mode " + string(m) + ", which is not registered")
			}
			if missing := sc.lacksFor(spec); missing != "" {
				panic("lab: scenario " + sc.name + " lists mode " + string(m) + " but has no " + missing)
			}
			listed[m] = true
		}
	}
	for m := range g.modes {
		if !listed[m] {
			panic("lab: mode " + string(m) + " is registered but in no row of the table")
		}
	}
	for name := range g.scenarios {
		if !slices.ContainsFunc(g.table, func(r tableRow) bool { return r.scenario == name }) {
			panic("lab: scenario " + name + " is registered but not in the table")
		}
	}
}

func seal() { registry.seal() }

// lookupMode returns the spec of m.
func lookupMode(m Mode) (*modeSpec, bool) {
	seal()
	s, ok := registry.modes[m]
	return s, ok
}

// lookupScenario returns the spec of the scenario called name.
func lookupScenario(name string) (*scenarioSpec, bool) {
	seal()
	s, ok := registry.scenarios[name]
	return s, ok
}

// Scenarios lists the scenarios in the table's order.
func Scenarios() []string {
	seal()
	out := make([]string, len(registry.table))
	for i, row := range registry.table {
		out[i] = row.scenario
	}
	return out
}

// ModesOf lists the modes of a scenario, in the order its report lists them
// (nil for an unknown scenario).
func ModesOf(scenario string) []Mode {
	seal()
	for _, row := range registry.table {
		if row.scenario == scenario {
			return slices.Clone(row.modes)
		}
	}
	return nil
}

// errUnknownScenario names the scenarios there are.
func errUnknownScenario(name string) error {
	return fmt.Errorf("lab: unknown scenario %q (%s)", name, strings.Join(Scenarios(), ", "))
}
