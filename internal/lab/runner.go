package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RunnerEnv marks a runner: a process that runs a whole lab (Run) for the
// admin server, which starts it as `idem lab-worker` with this variable set
// (WorkerMain hands over to RunnerMain). Its value is
// WorkerSpecOnStdin: the RunnerSpec, which may hold a password, is on
// stdin. The lab runs in a process of its own because the broker, which
// programs embed, must not link the lab and its SQLite and toolkit
// dependencies; and a process is what a cancel can stop for sure.
const RunnerEnv = "IDEM_LAB_RUNNER"

// RunnerSpec is a runner's orders: the knobs of `idem lab`'s flags, and
// the cluster to run against when the faults need no broker of its own.
type RunnerSpec struct {
	Scenario string `json:"scenario"`
	Modes    string `json:"modes"`
	Faults   string `json:"faults"`
	Events   int    `json:"events"`
	Duration string `json:"duration"`
	Seed     int64  `json:"seed"`
	// Bootstrap and ClientProps are Config's; they are used only when no
	// fault needs the broker as a child process.
	Bootstrap   []string          `json:"bootstrap,omitempty"`
	ClientProps map[string]string `json:"client_props,omitempty"`
}

// RunnerLine is one line of a runner's stdout, a JSON object: first
// Accepted or Invalid, then Progress lines, then Report (with its table and
// chart) or Error.
type RunnerLine struct {
	Accepted bool          `json:"accepted,omitempty"`
	Target   string        `json:"target,omitempty"` // with Accepted: which broker the run uses
	Invalid  *InvalidField `json:"invalid,omitempty"`
	Progress *Progress     `json:"progress,omitempty"`
	Report   *Report       `json:"report,omitempty"`
	Table    string        `json:"table,omitempty"` // WriteTable's text
	Chart    string        `json:"chart,omitempty"` // WriteSVG's drawing
	Error    string        `json:"error,omitempty"`
}

// InvalidField is a RunnerSpec the lab cannot run; Field is its JSON name.
type InvalidField struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Limits on a runner's spec: a run loads the machine that serves the
// admin API, so its size and time are bounded.
const (
	MaxRunnerEvents   = 10_000
	MaxRunnerDuration = 10 * time.Minute
)

// idemMain is the idem binary's main package: only it can also be the
// lab's broker (`idem serve`).
const idemMain = "github.com/idem-dev/idem/cmd/idem"

// RunnerMain runs the lab of the RunnerSpec on stdin until it is done or
// SIGTERM, writing RunnerLines to stdout; it returns the exit code (0 once
// a report or an invalid spec was written).
func RunnerMain() int {
	os.Unsetenv(RunnerEnv) // the lab's children are workers and brokers, not runners
	// SIGTERM is a cancel from the first moment: it must not kill the
	// runner before it has removed its files.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := &lineWriter{enc: json.NewEncoder(os.Stdout)}
	var spec RunnerSpec
	if err := json.NewDecoder(bufio.NewReader(io.LimitReader(os.Stdin, 1<<20))).Decode(&spec); err != nil {
		out.write(RunnerLine{Error: "lab runner: bad spec on stdin: " + err.Error()})
		return 2
	}
	cfg, invalid, err := runnerConfig(spec)
	if err != nil {
		out.write(RunnerLine{Error: "lab runner: " + err.Error()})
		return 1
	}
	if invalid != nil {
		out.write(RunnerLine{Invalid: invalid})
		return 0
	}
	target := "the broker serving this API"
	if cfg.Broker != nil {
		target = "a broker of the lab's own (child process)"
	}
	out.write(RunnerLine{Accepted: true, Target: target})
	cfg.Progress = func(p Progress) { out.write(RunnerLine{Progress: &p}) }
	// The run's files are the runner's to remove: a cancelled run's are
	// of no use, and a cancelled `idem lab` keeps them for its user, who
	// here is a browser.
	dir, err := os.MkdirTemp("", "idem-lab-")
	if err != nil {
		out.write(RunnerLine{Error: "lab runner: " + err.Error()})
		return 1
	}
	cfg.Dir = dir
	rep, err := Run(ctx, cfg)
	if ctx.Err() != nil { // a mode cut short may still be reported, as not measured
		os.RemoveAll(dir)
		out.write(RunnerLine{Error: "cancelled"})
		return 1
	}
	if err != nil {
		out.write(RunnerLine{Error: err.Error()})
		return 1
	}
	if rep.Artifacts == "" {
		os.RemoveAll(dir) // kept only as the evidence of a broken or unmeasured promise
	}
	var table, chart strings.Builder
	_ = WriteTable(&table, rep)
	_ = WriteSVG(&chart, rep)
	out.write(RunnerLine{Report: rep, Table: table.String(), Chart: chart.String()})
	return 0
}

// lineWriter writes one RunnerLine at a time (the progress callback and
// the end may race).
type lineWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *lineWriter) write(l RunnerLine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.enc.Encode(l)
}

// runnerConfig checks the spec with the flags' parsers and makes the run's
// configuration: the children are this executable.
func runnerConfig(s RunnerSpec) (Config, *InvalidField, error) {
	if s.Scenario == "" {
		s.Scenario = ScenarioCharge
	}
	modes, err := ParseModes(s.Scenario, s.Modes)
	if err != nil {
		field := "modes"
		if ModesOf(s.Scenario) == nil {
			field = "scenario"
		}
		return Config{}, &InvalidField{field, err.Error()}, nil
	}
	faults, err := ParseFaults(s.Faults)
	if err != nil {
		return Config{}, &InvalidField{"faults", err.Error()}, nil
	}
	if s.Events < 0 || s.Events > MaxRunnerEvents {
		return Config{}, &InvalidField{"events", fmt.Sprintf("want 1 to %d events per mode, not %d", MaxRunnerEvents, s.Events)}, nil
	}
	cfg := Config{Scenario: s.Scenario, Modes: modes, Faults: faults, N: s.Events, Seed: s.Seed}
	if s.Duration != "" {
		d, err := time.ParseDuration(s.Duration)
		if err != nil || d < time.Second || d > MaxRunnerDuration {
			return Config{}, &InvalidField{"duration", fmt.Sprintf("want a duration from 1s to %s such as \"45s\", not %q", MaxRunnerDuration, s.Duration)}, nil
		}
		cfg.Duration = d
	}
	self, err := os.Executable()
	if err != nil {
		return Config{}, nil, err
	}
	bi, _ := debug.ReadBuildInfo()
	isIdem := bi != nil && bi.Path == idemMain
	// A test binary doubling as the worker takes its role from WorkerEnv
	// and must run no test; idem has the subcommand.
	cfg.Worker = Command{Path: self, Args: []string{"lab-worker"}}
	if !isIdem {
		cfg.Worker.Args = []string{"-test.run=^$"}
	}
	if !slices.ContainsFunc(faults, Fault.needsBrokerProcess) {
		cfg.Bootstrap, cfg.ClientProps = s.Bootstrap, s.ClientProps
		return cfg, nil, nil
	}
	if !isIdem {
		return Config{}, &InvalidField{"faults", fmt.Sprintf("broker-kill and pause need a broker of the lab's own, which only the idem binary can start (this is %s)", self)}, nil
	}
	cfg.Broker = IdemBroker(self)
	return cfg, nil, nil
}

// IdemBroker is the Config.Broker of the idem binary at self: `idem serve`
// on the lab's data directory and address, without an admin server, quiet,
// and with no initial rebalance delay (the lab's groups join at once).
func IdemBroker(self string) func(dataDir, addr string) Command {
	return func(dataDir, addr string) Command {
		return Command{Path: self, Args: []string{"serve", "--data-dir", dataDir, "--kafka-addr", addr,
			"--admin-addr", "", "--log-level", "warn", "-X", "group.initial.rebalance.delay.ms=0"}}
	}
}
