package api

// Lab runs: `idem lab` for /v1/lab/runs and the console. One run at a
// time, started from a JSON spec with the knobs of the command's flags,
// its progress readable while it runs, cancellable, and its report kept
// afterwards (the last LabRunsConfig.Keep in memory, and as JSON under the
// broker's data directory, lab/<id>.json, read back at start).
//
// A run is the real lab (internal/lab), in a process of its own: the
// executable started as a lab runner (lab.RunnerEnv), with its orders on
// stdin and JSON lines on stdout (accepted or invalid, progress, report).
// Two reasons: the broker, which programs embed, must not link the lab and
// its SQLite and toolkit dependencies (internal/archtest says so, which is
// also why this lives here and not in a package of its own), and a cancel
// that sends SIGTERM to a process stops the run for sure, its consumer
// processes and broker with it. The runner checks the spec with the flags'
// own parsers (lab.ParseModes, lab.ParseFaults) before it answers, so a bad
// field is a 400 while the request waits.
//
// Faults that need the broker to be a child process (broker-kill, pause)
// make the lab start a broker of its own, as `idem lab` does; any other run
// goes to the broker serving the API, through one of its listeners and as
// the API's user (LabRunsConfig.Target), so the broker's ACLs apply to the
// lab's topics, groups and transactions as to any client.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/idem-dev/idem/internal/tail"
)

// labRunnerEnv is lab.RunnerEnv (this package must not import the lab; a test
// checks that the two agree).
const labRunnerEnv = "IDEM_LAB_RUNNER"

// idemMain is the idem binary's main package, whose `lab-worker`
// subcommand is also the lab runner.
const idemMain = "github.com/idem-dev/idem/cmd/idem"

// LabSpec is what a run measures: the knobs of `idem lab`'s flags.
type LabSpec struct {
	// Scenario is "charge", "aggregate", … (default charge).
	Scenario string `json:"scenario,omitempty"`
	// Modes is "all" or a comma-separated list of the scenario's modes.
	Modes string `json:"modes,omitempty"`
	// Faults is "all" (the default), "none" or a comma-separated list.
	// broker-kill and pause make the lab start a broker of its own.
	Faults string `json:"faults,omitempty"`
	// Events per mode (default 200, at most 10000).
	Events int `json:"events,omitempty"`
	// Duration bounds each mode's run, as Go writes durations ("45s";
	// default 2m, at most 10m).
	Duration string `json:"duration,omitempty"`
	// Seed of the fault plan (default: random, shown in the report).
	Seed *int64 `json:"seed,omitempty"`
}

// needsOwnBroker reports whether the faults make the lab start a broker of
// its own (the lab's rule: broker-kill and pause, which "all" includes).
func (s LabSpec) needsOwnBroker() bool {
	f := strings.TrimSpace(s.Faults)
	if f == "" || f == "all" {
		return true
	}
	for _, name := range strings.Split(f, ",") {
		if n := strings.TrimSpace(name); n == "broker-kill" || n == "pause" {
			return true
		}
	}
	return false
}

// labFieldError is a spec the lab cannot run: Field names the JSON field.
type labFieldError struct {
	Field   string
	Message string
}

func (e *labFieldError) Error() string { return e.Field + ": " + e.Message }

// LabTarget is how a run reaches the broker serving the API: its address and
// the client properties (security.protocol, sasl.*) of the API's user.
type LabTarget struct {
	Bootstrap   []string
	ClientProps map[string]string
}

// LabRunsConfig configures New.
type LabRunsConfig struct {
	// Executable is the program started as the lab runner: the idem binary
	// (`idem lab-worker`), or a test binary whose TestMain runs
	// lab.RunnerMain and lab.WorkerMain when their variables are set (it can
	// then not start a broker, so broker-kill and pause are refused). Empty:
	// runs are refused with errLabNoExecutable.
	Executable string
	// Target returns how a run started by user reaches the broker serving
	// the API (user and password are "" without admin credentials).
	Target func(user, password string) (LabTarget, error)
	// DataDir is the broker's data directory: reports are written to its
	// lab/ subdirectory and read back at start. Empty: memory only.
	DataDir string
	// Keep is how many runs are remembered (default 20); older ones are
	// dropped from memory and from DataDir.
	Keep int
	// StopGrace is how long a cancelled runner has to stop its children
	// before it is killed (default 30s).
	StopGrace time.Duration
	Logger    *slog.Logger
}

// LabStatus is where a run is.
type LabStatus string

// The statuses of a run: running, then done (a report), failed (the lab
// could not run: no broker, a refused client; Error says why) or cancelled.
const (
	LabRunning   LabStatus = "running"
	LabDone      LabStatus = "done"
	LabFailed    LabStatus = "failed"
	LabCancelled LabStatus = "cancelled"
)

// LabProgress is how far a running run is.
type LabProgress struct {
	Mode     string `json:"mode"`
	ModeNum  int    `json:"mode_number"` // 1-based
	Modes    int    `json:"modes"`
	Sent     int    `json:"sent"`
	Effected int    `json:"effected"`
	Events   int    `json:"events"`
}

// LabRun is a run as the API shows it.
type LabRun struct {
	ID       string       `json:"id"`
	Spec     LabSpec      `json:"spec"`
	Status   LabStatus    `json:"status"`
	Target   string       `json:"target,omitempty"` // the broker serving the API, or a broker of the lab's own
	Started  time.Time    `json:"started"`
	Finished *time.Time   `json:"finished,omitempty"`
	Progress *LabProgress `json:"progress,omitempty"`
	// Report is the lab's report, as `idem lab --json` prints it.
	Report json.RawMessage `json:"report,omitempty"`
	// Table is the report as `idem lab` prints it.
	Table string `json:"table,omitempty"`
	Error string `json:"error,omitempty"`
	// Chart is the report's SVG bar chart (`idem lab --chart`), served
	// on its own.
	Chart string `json:"-"`
}

// Errors of Start and Cancel.
var (
	// errLabBusy: a run is going on; one at a time.
	errLabBusy = errors.New("a lab run is already going on: wait for it or cancel it")
	// errLabNoExecutable: the process cannot start the lab.
	errLabNoExecutable = errors.New("lab runs need the idem binary, and this server does not run as idem (set IDEM_LAB_EXECUTABLE to an idem binary)")
	// errLabNoTarget: the broker serving the API has no listener the lab's
	// clients can use (LabRunsConfig.Target's error is wrapped with it).
	errLabNoTarget = errors.New("lab runs cannot reach this broker")
	// errLabNotFound: no run has that id (any more).
	errLabNotFound = errors.New("no such lab run")
	// errLabFinished: the run is over; there is nothing to cancel.
	errLabFinished = errors.New("the lab run is over: nothing to cancel")
	// errLabClosed: the manager is closed (the broker is stopping).
	errLabClosed = errors.New("lab runs: closed")
)

// LabRuns starts runs and keeps their reports.
type LabRuns struct {
	cfg  LabRunsConfig
	args []string // the runner's arguments

	mu     sync.Mutex
	closed bool
	runs   []*labEntry // oldest first, at most cfg.Keep
	active *labEntry   // the run going on (from before it is accepted)
	wg     sync.WaitGroup
}

// labEntry is one run; run and cancelled are guarded by LabRuns.mu.
type labEntry struct {
	run       LabRun
	cancelled bool
	stop      func()        // SIGTERM to the runner; nil once over
	done      chan struct{} // closed when over
}

// New returns a manager holding the reports found under cfg.DataDir.
func NewLabRuns(cfg LabRunsConfig) *LabRuns {
	if cfg.Keep <= 0 {
		cfg.Keep = 20
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &LabRuns{cfg: cfg, args: []string{"lab-worker"}}
	if cfg.Executable != "" {
		// A test binary takes its role from the environment and must run
		// no test; idem has the subcommand.
		if bi, err := buildinfo.ReadFile(cfg.Executable); err == nil && bi.Path != idemMain {
			m.args = []string{"-test.run=^$"}
		}
	}
	m.load()
	return m
}

// labRunnerSpec is lab.RunnerSpec as JSON.
type labRunnerSpec struct {
	Scenario    string            `json:"scenario"`
	Modes       string            `json:"modes"`
	Faults      string            `json:"faults"`
	Events      int               `json:"events"`
	Duration    string            `json:"duration"`
	Seed        int64             `json:"seed"`
	Bootstrap   []string          `json:"bootstrap,omitempty"`
	ClientProps map[string]string `json:"client_props,omitempty"`
}

// labRunnerLine is lab.RunnerLine as JSON.
type labRunnerLine struct {
	Accepted bool           `json:"accepted"`
	Target   string         `json:"target"`
	Invalid  *labFieldError `json:"invalid"`
	Progress *struct {
		Mode                              string
		ModeNum, Modes, Sent, Effected, N int
	} `json:"progress"`
	Report json.RawMessage `json:"report"`
	Table  string          `json:"table"`
	Chart  string          `json:"chart"`
	Error  string          `json:"error"`
}

// labAcceptTimeout bounds how long Start waits for the runner to check the
// spec.
const labAcceptTimeout = 30 * time.Second

// Start starts a run of spec as user and returns it once the lab has
// accepted the spec. Errors: a *labFieldError, errLabBusy, errLabNoExecutable,
// errLabNoTarget, or why the runner did not start.
func (m *LabRuns) Start(spec LabSpec, user, password string) (LabRun, error) {
	if m.cfg.Executable == "" {
		return LabRun{}, errLabNoExecutable
	}
	rs := labRunnerSpec{Scenario: spec.Scenario, Modes: spec.Modes, Faults: spec.Faults, Events: spec.Events, Duration: spec.Duration}
	if spec.Seed != nil {
		rs.Seed = *spec.Seed
	} else {
		rs.Seed = time.Now().UnixNano() % 1_000_000
		spec.Seed = &rs.Seed
	}
	if !spec.needsOwnBroker() {
		if m.cfg.Target == nil {
			return LabRun{}, fmt.Errorf("%w: no LabRunsConfig.Target", errLabNoTarget)
		}
		t, err := m.cfg.Target(user, password)
		if err != nil {
			return LabRun{}, fmt.Errorf("%w: %w", errLabNoTarget, err)
		}
		rs.Bootstrap, rs.ClientProps = t.Bootstrap, t.ClientProps
	}
	orders, err := json.Marshal(rs)
	if err != nil {
		return LabRun{}, err
	}

	e := &labEntry{done: make(chan struct{}), run: LabRun{ID: newLabID(), Spec: spec, Status: LabRunning, Started: time.Now().UTC()}}
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return LabRun{}, errLabClosed
	case m.active != nil:
		m.mu.Unlock()
		return LabRun{}, errLabBusy
	}
	m.active = e // held while the runner checks the spec: one run at a time
	m.mu.Unlock()

	r, first, err := m.startRunner(orders)
	if err == nil && first.Invalid != nil {
		err = first.Invalid
	}
	if err != nil {
		if r != nil {
			r.kill()
		}
		m.mu.Lock()
		m.active = nil
		m.mu.Unlock()
		return LabRun{}, err
	}
	m.mu.Lock()
	if m.closed { // closed while the runner checked the spec: Close did not see it
		m.active = nil
		m.mu.Unlock()
		r.terminate() // the lab has started: let it stop its children
		for range r.lines {
		}
		_ = r.cmd.Wait()
		r.reaped()
		return LabRun{}, errLabClosed
	}
	e.run.Target = first.Target
	e.stop = r.terminate
	m.remember(e)
	run := e.run
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		m.follow(e, r)
	}()
	m.cfg.Logger.Info("lab run started", "lab_run", run.ID, "scenario", spec.Scenario, "modes", spec.Modes,
		"faults", spec.Faults, "events", spec.Events, "target", run.Target)
	return run, nil
}

// labRunner is a lab runner process and its stdout's lines.
type labRunner struct {
	cmd    *exec.Cmd
	lines  chan labRunnerLine // closed at the end of stdout
	stderr *tail.Buffer
	grace  time.Duration

	stopOnce sync.Once
	mu       sync.Mutex  // guards killer
	killer   *time.Timer // set by terminate
}

// startRunner starts the runner with its orders on stdin and returns its
// first line (accepted, invalid or an error).
func (m *LabRuns) startRunner(orders []byte) (*labRunner, labRunnerLine, error) {
	cmd := exec.Command(m.cfg.Executable, m.args...)
	cmd.Env = append(os.Environ(), labRunnerEnv+"=-")
	cmd.Stdin = bytes.NewReader(orders)
	cmd.SysProcAttr = labRunnerAttr()
	r := &labRunner{cmd: cmd, lines: make(chan labRunnerLine, 64), stderr: tail.NewBuffer(8 << 10), grace: m.cfg.StopGrace}
	cmd.Stderr = r.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, labRunnerLine{}, err
	}
	if err := cmd.Start(); err != nil {
		return nil, labRunnerLine{}, fmt.Errorf("start the lab runner %s: %w", m.cfg.Executable, err)
	}
	go r.read(stdout)
	select {
	case l, ok := <-r.lines:
		switch {
		case !ok:
			return r, l, r.exitError(cmd.Wait())
		case l.Error != "":
			return r, l, errors.New(l.Error)
		case !l.Accepted && l.Invalid == nil:
			return r, l, errors.New("the lab runner answered neither accepted nor invalid")
		}
		return r, l, nil
	case <-time.After(labAcceptTimeout):
		return r, labRunnerLine{}, fmt.Errorf("the lab runner did not answer within %s", labAcceptTimeout)
	}
}

// labMaxLine bounds one line of a runner (a report with its table and chart
// is tens of kilobytes).
const labMaxLine = 16 << 20

// read sends stdout's lines to r.lines until it ends, then closes it. A
// line it cannot read ends the reading but not the draining, so the runner
// never blocks on a full pipe.
func (r *labRunner) read(stdout io.Reader) {
	defer close(r.lines)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), labMaxLine)
	for sc.Scan() {
		var l labRunnerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			l = labRunnerLine{Error: "the lab runner wrote a line that is not JSON: " + err.Error()}
		}
		r.lines <- l
	}
	if err := sc.Err(); err != nil {
		r.lines <- labRunnerLine{Error: "reading the lab runner: " + err.Error()}
		_, _ = io.Copy(io.Discard, stdout)
	}
}

// terminate asks the runner to stop (SIGTERM: the lab stops its consumers
// and its broker) and kills it if it has not within the grace period.
func (r *labRunner) terminate() {
	r.stopOnce.Do(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		r.mu.Lock()
		r.killer = time.AfterFunc(r.grace, func() { _ = r.cmd.Process.Kill() })
		r.mu.Unlock()
	})
}

// reaped stops the kill that terminate armed, once the runner is gone.
func (r *labRunner) reaped() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.killer != nil {
		r.killer.Stop()
	}
}

// kill ends a runner that was never accepted, and reaps it.
func (r *labRunner) kill() {
	_ = r.cmd.Process.Kill()
	for range r.lines {
	}
	_ = r.cmd.Wait()
}

// exitError says why a runner ended without a report.
func (r *labRunner) exitError(err error) error {
	msg := strings.TrimSpace(r.stderr.String())
	switch {
	case err == nil && msg == "":
		return errors.New("the lab runner ended without a report")
	case err == nil:
		return errors.New("the lab runner ended without a report: " + msg)
	case msg == "":
		return fmt.Errorf("the lab runner failed: %w", err)
	}
	return fmt.Errorf("the lab runner failed: %w: %s", err, msg)
}

// follow records the runner's lines until it ends, then how the run ended.
func (m *LabRuns) follow(e *labEntry, r *labRunner) {
	var lastErr string
	for l := range r.lines {
		m.mu.Lock()
		switch {
		case l.Progress != nil:
			p := l.Progress
			e.run.Progress = &LabProgress{Mode: p.Mode, ModeNum: p.ModeNum, Modes: p.Modes, Sent: p.Sent, Effected: p.Effected, Events: p.N}
		case l.Report != nil:
			e.run.Report, e.run.Table, e.run.Chart = l.Report, l.Table, l.Chart
		case l.Error != "":
			lastErr = l.Error
		}
		m.mu.Unlock()
	}
	waitErr := r.cmd.Wait()
	r.reaped()
	m.mu.Lock()
	now := time.Now().UTC()
	e.run.Finished, e.stop = &now, nil
	switch {
	case e.cancelled:
		e.run.Status, e.run.Report, e.run.Table, e.run.Chart = LabCancelled, nil, "", ""
	case e.run.Report != nil:
		e.run.Status = LabDone
	case lastErr != "":
		e.run.Status, e.run.Error = LabFailed, lastErr
	default:
		e.run.Status, e.run.Error = LabFailed, r.exitError(waitErr).Error()
	}
	m.active = nil
	run := e.run
	m.mu.Unlock()
	close(e.done)
	m.cfg.Logger.Info("lab run over", "lab_run", run.ID, "status", run.Status, "err", run.Error)
	m.save(run)
}

// List returns the remembered runs, newest first.
func (m *LabRuns) List() []LabRun {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]LabRun, 0, len(m.runs))
	for i := len(m.runs) - 1; i >= 0; i-- {
		out = append(out, m.runs[i].run)
	}
	return out
}

// Get returns the run id.
func (m *LabRuns) Get(id string) (LabRun, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.find(id); e != nil {
		return e.run, nil
	}
	return LabRun{}, errLabNotFound
}

// Latest returns the newest run with a report, if any.
func (m *LabRuns) Latest() (LabRun, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.runs) - 1; i >= 0; i-- {
		if m.runs[i].run.Report != nil {
			return m.runs[i].run, true
		}
	}
	return LabRun{}, false
}

// Cancel stops the run id and waits, until ctx is done, for it to be over
// (the lab's consumer processes and broker stopped); it returns the run as
// it is then.
func (m *LabRuns) Cancel(ctx context.Context, id string) (LabRun, error) {
	m.mu.Lock()
	e := m.find(id)
	switch {
	case e == nil:
		m.mu.Unlock()
		return LabRun{}, errLabNotFound
	case e.stop == nil:
		m.mu.Unlock()
		return e.run, errLabFinished
	}
	e.cancelled = true
	e.stop()
	m.mu.Unlock()
	select {
	case <-e.done:
	case <-ctx.Done():
	}
	return m.Get(id)
}

// Close cancels the run going on and waits for it to be over.
func (m *LabRuns) Close() {
	m.mu.Lock()
	m.closed = true
	if e := m.active; e != nil && e.stop != nil {
		e.cancelled = true
		e.stop()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *LabRuns) find(id string) *labEntry {
	for _, e := range m.runs {
		if e.run.ID == id {
			return e
		}
	}
	return nil
}

// remember appends e, forgetting the oldest runs past the bound (never the
// one going on: it is the newest). Called with m.mu held.
func (m *LabRuns) remember(e *labEntry) {
	m.runs = append(m.runs, e)
	for len(m.runs) > m.cfg.Keep {
		old := m.runs[0]
		m.runs = m.runs[1:]
		if m.cfg.DataDir != "" {
			_ = os.Remove(m.file(old.run.ID))
		}
	}
}

// labIDPattern is what an id looks like: a UTC time (so ids sort by start)
// and a random suffix. Files with other names under lab/ are not runs.
var labIDPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}-[0-9a-f]{6}$`)

func newLabID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

func (m *LabRuns) dir() string           { return filepath.Join(m.cfg.DataDir, "lab") }
func (m *LabRuns) file(id string) string { return filepath.Join(m.dir(), id+".json") }

// savedLabRun is a run as its file holds it: the chart too.
type savedLabRun struct {
	LabRun
	Chart string `json:"chart,omitempty"`
}

// labMaxReportFile bounds a report file read back at start: a damaged or
// foreign file must not be read whole.
const labMaxReportFile = 4 << 20

// load reads the newest cfg.Keep reports under DataDir/lab.
func (m *LabRuns) load() {
	if m.cfg.DataDir == "" {
		return
	}
	names, err := os.ReadDir(m.dir())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.cfg.Logger.Warn("lab runs: cannot list savedLabRun reports", "dir", m.dir(), "err", err)
		}
		return
	}
	var ids []string
	for _, n := range names {
		if id, ok := strings.CutSuffix(n.Name(), ".json"); ok && labIDPattern.MatchString(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) > m.cfg.Keep {
		ids = ids[len(ids)-m.cfg.Keep:]
	}
	for _, id := range ids {
		run, err := readLabRun(m.file(id))
		if err != nil || run.ID != id {
			m.cfg.Logger.Warn("lab runs: skipping an unreadable savedLabRun report", "file", m.file(id), "err", err)
			continue
		}
		done := make(chan struct{})
		close(done)
		m.runs = append(m.runs, &labEntry{run: run, done: done})
	}
}

func readLabRun(path string) (LabRun, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return LabRun{}, err
	}
	if len(b) > labMaxReportFile {
		return LabRun{}, fmt.Errorf("not a report: over %d bytes", labMaxReportFile)
	}
	var s savedLabRun
	if err := json.Unmarshal(b, &s); err != nil {
		return LabRun{}, err
	}
	s.LabRun.Chart = s.Chart
	return s.LabRun, nil
}

// save writes the finished run to DataDir/lab/<id>.json, through a
// temporary file and a rename so that a crash leaves no half report.
func (m *LabRuns) save(run LabRun) {
	if m.cfg.DataDir == "" {
		return
	}
	err := func() error {
		if err := os.MkdirAll(m.dir(), 0o755); err != nil {
			return err
		}
		js, err := json.MarshalIndent(savedLabRun{LabRun: run, Chart: run.Chart}, "", "  ")
		if err != nil {
			return err
		}
		tmp := m.file(run.ID) + ".tmp"
		if err := os.WriteFile(tmp, js, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, m.file(run.ID))
	}()
	if err != nil {
		m.cfg.Logger.Warn("lab runs: could not save the report", "lab_run", run.ID, "err", err)
	}
}

// LabReportSummary is the part of a lab report the console draws: the
// table's rows and verdicts.
type LabReportSummary struct {
	Scenario string   `json:"scenario"`
	N        int      `json:"n"`
	Seed     int64    `json:"seed"`
	Faults   []string `json:"faults"`
	Skipped  []string `json:"faults_skipped"`
	Target   string   `json:"target"`
	Modes    []struct {
		Mode          string `json:"mode"`
		Available     bool   `json:"available"`
		Unavailable   string `json:"unavailable"`
		Sent          int    `json:"sent"`
		Acked         int    `json:"acknowledged"`
		Lost          int    `json:"lost"`
		DupDeliveries int    `json:"duplicate_deliveries"`
		DupEffects    int    `json:"duplicate_effects"`
		Promise       string `json:"promise"`
		Kept          *bool  `json:"kept"`
		Verdict       string `json:"verdict"`
	} `json:"modes"`
	Artifacts string `json:"artifacts"`
}

// Summary reads the run's report (ok false: no report, or not one this
// version can read).
func (r LabRun) Summary() (LabReportSummary, bool) {
	var s LabReportSummary
	if r.Report == nil || json.Unmarshal(r.Report, &s) != nil {
		return s, false
	}
	return s, true
}
