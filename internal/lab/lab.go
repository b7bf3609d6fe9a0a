// Package lab is `idem lab`: the delivery-semantics comparison that every
// messaging guide repeats (at-most-once loses, at-least-once duplicates, an
// idempotent consumer or a transaction changes the world once), measured
// under injected faults instead of asserted.
//
// A run starts a broker as a child process (so kill -9 is real) or uses a
// given cluster, puts a Kafka-framing-aware fault proxy (internal/verify)
// between the producer and the broker, and runs each delivery mode in turn
// with the same seeded fault plan: lost producer acknowledgements, acks that
// time out, the broker killed and paused, and the consumer (another child
// process) killed with SIGKILL between its side effect and its commit. The
// side effects are counted where they happen, at a payment gateway the lab
// runs (scenario "charge") or in the consumer's state (scenario
// "aggregate"), so a double charge is observed, not inferred.
//
// Every mode states its promise; the report says whether the run kept it.
// A mode breaking its own promise is a failure; at-least-once duplicating
// is not, since duplicating is what at-least-once means.
//
// Each delivery mode is one file (mode_*.go) and each scenario one file
// (scenario_*.go) that registers its spec; registry.go holds the table of
// which modes each scenario compares. The rest runs any spec the same way:
// run.go (the modes in turn, verdicts, evidence), target.go (the broker
// process, the fault proxies, the transaction probe), plan.go (the seeded
// fault plan), produce.go (the producer and its faults), supervise.go (the
// worker's incarnations and planned crashes), measure.go (counting effects,
// the input check), worker.go (the consumer process's shared bookkeeping)
// and report.go (table, JSON, chart).
package lab

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Mode is a delivery mode under test. Each has its own file (mode_*.go)
// with its spec: producer, consumer loop, promise.
type Mode string

// Fault is a kind of trouble the lab injects.
type Fault string

const (
	// FaultLostAck: the proxy drops a produce response after the broker
	// applied the request.
	FaultLostAck Fault = "lost-ack"
	// FaultAckTimeout: the proxy delays a produce response past the
	// producer's request timeout.
	FaultAckTimeout Fault = "ack-timeout"
	// FaultConsumerCrash: the consumer process is killed (SIGKILL) between
	// its side effect and its commit (for at-most-once: between its commit
	// and its side effect, the place where that mode loses).
	FaultConsumerCrash Fault = "consumer-crash"
	// FaultBrokerKill: the broker process is killed with SIGKILL while the
	// producer is sending and restarted on the same data directory.
	FaultBrokerKill Fault = "broker-kill"
	// FaultPause: the broker is stopped with SIGSTOP long enough for
	// requests to time out, then resumed.
	FaultPause Fault = "pause"
)

// AllFaults lists every fault kind.
var AllFaults = []Fault{FaultLostAck, FaultAckTimeout, FaultConsumerCrash, FaultBrokerKill, FaultPause}

// needsBrokerProcess reports whether f needs the broker to be a child of the lab.
func (f Fault) needsBrokerProcess() bool { return f == FaultBrokerKill || f == FaultPause }

// ParseFaults parses a comma-separated list ("none", "all" or names).
func ParseFaults(s string) ([]Fault, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "all":
		return slices.Clone(AllFaults), nil
	case "none":
		return []Fault{}, nil
	}
	var out []Fault
	for _, name := range strings.Split(s, ",") {
		f := Fault(strings.TrimSpace(name))
		if !slices.Contains(AllFaults, f) {
			return nil, fmt.Errorf("unknown fault %q (known: %s, all, none)", f, joinFaults(AllFaults))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// ParseModes parses a comma-separated list of modes of scenario ("all" or "").
func ParseModes(scenario, s string) ([]Mode, error) {
	all := ModesOf(scenario)
	if all == nil {
		return nil, errUnknownScenario(scenario)
	}
	if s == "" || s == "all" {
		return all, nil
	}
	var out []Mode
	for _, name := range strings.Split(s, ",") {
		m := Mode(strings.TrimSpace(name))
		if !slices.Contains(all, m) {
			var known []string
			for _, k := range all {
				known = append(known, string(k))
			}
			return nil, fmt.Errorf("scenario %s has no mode %q (known: %s, all)", scenario, m, strings.Join(known, ", "))
		}
		out = append(out, m)
	}
	return out, nil
}

func joinFaults(fs []Fault) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, ", ")
}

// Command is how to start a child process.
type Command struct {
	Path string
	Args []string
	Env  []string
}

// Progress is reported while a run goes on.
type Progress struct {
	Mode     Mode
	ModeNum  int // 1-based
	Modes    int
	Sent     int
	Effected int
	N        int
}

// Config shapes a run. Worker is required; Broker is required unless
// Bootstrap is set.
type Config struct {
	Scenario string
	Modes    []Mode  // default: every mode of the scenario
	Faults   []Fault // nil: every fault; empty: none
	N        int     // events per mode (default 200)
	Seed     int64
	// Duration bounds each mode's run; a mode that has not finished by then
	// is reported as not measured (default 2 minutes).
	Duration time.Duration
	// Bootstrap runs against an existing Kafka-compatible cluster; the
	// faults that need the broker as a child process are skipped.
	Bootstrap []string
	// ClientProps are client security properties by their librdkafka names
	// (security.protocol, sasl.*, ssl.*; see internal/clientprops): every
	// Kafka client of the run connects with them, the lab's own and its
	// workers' (which get them in their spec, on stdin). They need
	// Bootstrap: the lab's own broker listens in plaintext on loopback.
	ClientProps map[string]string
	// Broker returns the command that runs a broker on dataDir, listening on
	// addr, until SIGTERM (e.g. `idem serve --data-dir … --kafka-addr …`).
	Broker func(dataDir, addr string) Command
	// Worker is the command that runs a consumer: it calls WorkerMain, which
	// reads its orders from stdin (WorkerEnv in its environment says so).
	Worker Command
	// Dir holds the run's files (default: a temporary directory, removed
	// unless the run broke a promise).
	Dir        string
	Partitions int32 // per topic (default 3)
	Customers  int   // distinct customers / keys (default 20)
	Progress   func(Progress)
	Logf       func(format string, args ...any)
	// Break is a test hook that deliberately breaks something, to prove the
	// verdicts can turn red (one of the Break* constants).
	Break string
}

const (
	// BreakSkipDedupe makes the idempotent consumer skip both its
	// processed-id check and the gateway's idempotency key.
	BreakSkipDedupe = "skip-dedupe"
	// BreakOutputOutsideTxn makes the exactly-once consumer write its output
	// with a plain producer, outside the transaction that commits its input
	// offsets: the exactly-once path without its atomicity.
	BreakOutputOutsideTxn = "output-outside-txn"
	// BreakBrokerDuplicates emulates a broker that forgets producer
	// sequences: at each lost-ack point of the plan the proxy also replays the
	// acknowledged produce without its producer id, so even the idempotent
	// producer's events land twice.
	BreakBrokerDuplicates = "broker-duplicates"
	// BreakBrokerLosesRead emulates a broker that loses an acknowledged
	// record on the read path: the consumer reads through the proxy, which
	// drops one record batch from a fetch response.
	BreakBrokerLosesRead = "broker-loses-read"
)

func (c *Config) defaults() {
	if c.Scenario == "" {
		c.Scenario = ScenarioCharge
	}
	if c.Modes == nil {
		c.Modes = ModesOf(c.Scenario)
	}
	if c.Faults == nil {
		c.Faults = slices.Clone(AllFaults)
	}
	if c.N <= 0 {
		c.N = 200
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Minute
	}
	if c.Partitions <= 0 {
		c.Partitions = 3
	}
	if c.Customers <= 0 {
		c.Customers = 20
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Report is the result of a run: one row per mode.
type Report struct {
	Scenario  string       `json:"scenario"`
	N         int          `json:"n"`
	Seed      int64        `json:"seed"`
	Faults    []Fault      `json:"faults"`
	Skipped   []Fault      `json:"faults_skipped,omitempty"` // faults the target cannot take
	Target    string       `json:"target"`
	Started   time.Time    `json:"started"`
	Elapsed   Duration     `json:"elapsed_ms"`
	Modes     []ModeResult `json:"modes"`
	Artifacts string       `json:"artifacts,omitempty"` // where a failing run's evidence is
}

// ModeResult is one row of the table and the verdict under it.
type ModeResult struct {
	Mode        Mode   `json:"mode"`
	Available   bool   `json:"available"`
	Unavailable string `json:"unavailable,omitempty"` // why the mode could not run
	Complete    bool   `json:"complete"`              // every acknowledged event was consumed before the deadline
	Sent        int    `json:"sent"`
	Acked       int    `json:"acknowledged"`
	// Lost counts acknowledged events with no effect at all.
	Lost int `json:"lost"`
	// LostUnacked counts events the producer did not get acknowledged that
	// also had no effect (allowed in every mode: the producer was told).
	LostUnacked int `json:"lost_unacknowledged"`
	// DupDeliveries counts deliveries to the consumer beyond the first of
	// each event (redeliveries and producer duplicates).
	DupDeliveries int `json:"duplicate_deliveries"`
	// DupEffects counts side effects beyond the first of each event: double
	// charges, or double counts in the aggregate.
	DupEffects int `json:"duplicate_effects"`
	// Overcharged counts customers the gateway charged more than they owe
	// (charge scenario, modes that call the gateway).
	Overcharged int `json:"customers_overcharged"`
	// Throughput is distinct events effected per second, from the first send
	// to the last effect, faults included.
	Throughput float64  `json:"throughput_per_s"`
	P50        Duration `json:"p50_latency_ms"`
	P99        Duration `json:"p99_latency_ms"` // send to first effect
	// Aggregate scenario: the true total (each event in the log once) and
	// what the mode computed.
	TrueTotal     int64 `json:"true_total,omitempty"`
	ComputedTotal int64 `json:"computed_total,omitempty"`
	Drift         int64 `json:"drift,omitempty"`
	// Counts are a scenario's own numbers ("queue": blocked, dead_lettered).
	Counts map[string]int `json:"counts,omitempty"`
	// OutOfOrder counts events whose effect came after the effect of a
	// later event with the same key (webhook scenario).
	OutOfOrder int `json:"out_of_order,omitempty"`
	// Faults counts the faults actually injected, by kind.
	Faults map[string]int `json:"faults_injected"`
	// Log is the broker-side check of the input topic: every acknowledged
	// event is in it (the set checker on the producer's history and a drain).
	Log     string `json:"log_check"`
	LogOK   bool   `json:"log_ok"`
	Promise string `json:"promise"`
	// Kept is nil when the run did not measure the promise.
	Kept    *bool  `json:"kept"`
	Verdict string `json:"verdict"`
}

// Duration marshals as milliseconds.
type Duration time.Duration

// MarshalJSON writes milliseconds with microsecond precision.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond))), nil
}

// Broken reports whether some mode broke its own promise.
func (r Report) Broken() bool {
	for _, m := range r.Modes {
		if m.Kept != nil && !*m.Kept {
			return true
		}
	}
	return false
}

// Incomplete reports whether some available mode could not be measured.
func (r Report) Incomplete() bool {
	for _, m := range r.Modes {
		if m.Available && m.Kept == nil {
			return true
		}
	}
	return false
}
