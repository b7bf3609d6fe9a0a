package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/idem-dev/idem/internal/verify"
)

// Run runs every mode of cfg.Scenario in turn and returns the report. An
// error means the lab itself could not run (no broker, no topic); a mode
// that breaks its promise is reported in the Report, not as an error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	scenario, ok := lookupScenario(cfg.Scenario)
	if !ok {
		return nil, errUnknownScenario(cfg.Scenario)
	}
	modes := make([]*modeSpec, len(cfg.Modes))
	for i, m := range cfg.Modes {
		if modes[i], ok = lookupMode(m); !ok || !slices.Contains(ModesOf(cfg.Scenario), m) {
			return nil, fmt.Errorf("lab: scenario %s has no mode %q", cfg.Scenario, m)
		}
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
	if err := t.open(ctx, rep); err != nil {
		if removeDir && len(cfg.Bootstrap) > 0 {
			os.RemoveAll(cfg.Dir) // nothing in it yet (a broker of its own leaves its log)
		}
		return nil, err
	}
	t.probe(ctx, modes)
	for i, m := range modes {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lab: interrupted before mode %s: %w (files in %s)", m.mode, err, cfg.Dir)
		}
		res := ModeResult{Mode: m.mode, Faults: map[string]int{}, Promise: scenario.promiseOf(m)}
		if ok, why := t.canRun(m); !ok {
			res.Unavailable = why
			res.Verdict = "unavailable: " + why
		} else {
			r, err := runMode(ctx, &cfg, t, rep.Faults, scenario, m, i, len(modes))
			if err != nil && refused(err) {
				t.close()
				if removeDir {
					os.RemoveAll(cfg.Dir) // a refusal, not evidence
				}
				return nil, fmt.Errorf("lab: mode %s: %w: the cluster refused the lab's client (over %s; its user needs to create and delete topics, produce, consume in a group and commit)",
					m.mode, err, t.sec.Protocol)
			}
			if err != nil {
				return nil, fmt.Errorf("lab: mode %s: %w (files in %s)", m.mode, err, cfg.Dir)
			}
			res = r
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

// run is one mode's bookkeeping.
type run struct {
	cfg      *Config
	t        *target
	mode     *modeSpec
	scenario *scenarioSpec
	dir      string
	topic    string
	output   string
	group    string
	sink     sink // nil when the effects are records of the output topic
	rec      *verify.Recorder

	mu       sync.Mutex
	injected map[string]int // faults injected, by kind
	faultLog []string
	sentAt   map[string]time.Time
	events   map[string]Event
}

// inject records one injected fault, in the counts and in the fault log.
func (r *run) inject(f string, detail string) {
	r.mu.Lock()
	r.injected[f]++
	r.faultLog = append(r.faultLog, fmt.Sprintf("%s %-15s %s", time.Now().UTC().Format("15:04:05.000"), f, detail))
	r.mu.Unlock()
}

// runMode runs one mode under the plan of the run's faults and judges it.
func runMode(ctx context.Context, cfg *Config, t *target, faults []Fault, sc *scenarioSpec, m *modeSpec, idx, total int) (ModeResult, error) {
	res := ModeResult{Mode: m.mode, Available: true, Faults: map[string]int{}, Promise: sc.promiseOf(m)}
	r, err := newRun(ctx, cfg, t, sc, m)
	if err != nil {
		return res, err
	}
	if r.sink != nil {
		defer r.sink.close()
	}
	workerErr, produceErr := r.execute(ctx, makePlan(cfg.Seed, cfg.N, faults), func(sent, effected int) {
		cfg.Progress(Progress{Mode: m.mode, ModeNum: idx + 1, Modes: total, Sent: sent, Effected: effected, N: cfg.N})
	})
	if produceErr != nil && ctx.Err() == nil && !errors.Is(produceErr, context.DeadlineExceeded) {
		return res, produceErr
	}
	res.Complete = workerErr == nil && produceErr == nil
	if err := r.measure(ctx, &res); err != nil {
		return res, err
	}
	r.mu.Lock()
	for k, v := range r.injected {
		res.Faults[k] = v
	}
	r.mu.Unlock()
	r.judge(&res, workerErr, produceErr)
	if res.Kept != nil && *res.Kept && len(cfg.Bootstrap) > 0 {
		r.deleteTopics(ctx)
	}
	if res.Kept == nil || !*res.Kept {
		r.keepEvidence(faults)
	}
	return res, nil
}

// newRun creates the mode's directory and topics, and opens the scenario's
// sink unless the effects are records of the output topic.
func newRun(ctx context.Context, cfg *Config, t *target, sc *scenarioSpec, m *modeSpec) (*run, error) {
	name := fmt.Sprintf("%s-%s-%d-%d", cfg.Scenario, m.mode, cfg.Seed, time.Now().UnixNano()%1e6)
	r := &run{cfg: cfg, t: t, mode: m, scenario: sc, dir: filepath.Join(cfg.Dir, string(m.mode)),
		topic: "idem-lab-" + name, output: "idem-lab-" + name + "-out", group: "idem-lab-" + name,
		rec: verify.NewRecorder(), injected: map[string]int{}, sentAt: map[string]time.Time{}, events: map[string]Event{}}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
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
		return nil, fmt.Errorf("create topics: %w", err)
	}
	if !m.effectsInOutput {
		var err error
		if r.sink, err = sc.openSink(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// execute runs the producer and the supervised worker until both are done
// or the mode's deadline passes, reporting progress every 200 ms if the
// run asked for it. It returns why the worker and the producer stopped
// early (nil: they finished).
func (r *run) execute(ctx context.Context, p plan, progress func(sent, effected int)) (workerErr, produceErr error) {
	mctx, cancel := context.WithDeadline(ctx, time.Now().Add(r.cfg.Duration))
	defer cancel()
	var wg sync.WaitGroup
	workerDone := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		workerDone <- r.supervise(mctx, p)
	}()
	progressStop := make(chan struct{})
	if r.cfg.Progress != nil {
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
					progress(r.progress())
				}
			}
		}()
	}
	produceErr = r.produce(mctx, p)
	if produceErr == nil {
		produceErr = r.writeEnd(mctx)
	}
	if produceErr != nil {
		cancel()
	}
	workerErr = <-workerDone
	close(progressStop)
	wg.Wait()
	return workerErr, produceErr
}

// judge sets the verdict: not measured if the mode did not finish in time,
// else whether it kept its promise.
func (r *run) judge(res *ModeResult, workerErr, produceErr error) {
	if !res.Complete {
		why := "the consumer did not settle every event within " + r.cfg.Duration.String()
		if workerErr != nil {
			why += " (" + workerErr.Error() + ")"
		}
		if produceErr != nil {
			why = "the producer did not finish within " + r.cfg.Duration.String() + " (" + produceErr.Error() + ")"
		}
		res.Verdict = "NOT MEASURED: " + why
		return
	}
	kept := r.mode.promise.kept(*res)
	res.Kept = &kept
	if kept {
		res.Verdict = "kept"
	} else {
		res.Verdict = "BROKEN"
	}
}

// deleteTopics leaves someone else's cluster as it was; a broken run keeps
// its topics as evidence.
func (r *run) deleteTopics(ctx context.Context) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = r.t.admin(dctx, func(adm *kadm.Client) error {
		_, err := adm.DeleteTopics(dctx, r.topic, r.output)
		return err
	})
}

// keepEvidence writes what it takes to replay the run: the producer's
// history, the fault log and the seed (the plan is a function of seed and
// N).
func (r *run) keepEvidence(faults []Fault) {
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
		r.scenario.name, r.mode.mode, r.cfg.N, r.cfg.Seed, fs, strings.Join(r.faultLog, "\n"))
	r.mu.Unlock()
	_ = os.WriteFile(filepath.Join(r.dir, "faults.log"), []byte(fl), 0o644)
}
