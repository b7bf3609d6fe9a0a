package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/idem-dev/idem/internal/verify"
)

// supervise runs worker incarnations until one finishes (exit 0): the
// planned crashes first, then restarts after unplanned exits, which the
// broker kills can cause. It returns nil once the worker finished.
func (r *run) supervise(ctx context.Context, p plan) error {
	logf, err := os.OpenFile(filepath.Join(r.dir, "worker.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	spec, err := r.workerSpec()
	if err != nil {
		return err
	}
	failures, crashed := 0, 0
	for k := 0; ; k++ {
		// The plan's next crash stays armed until it has happened: an
		// incarnation that failed for another reason does not use it up.
		spec.CrashAfter = 0
		if crashed < len(p.crashes) {
			spec.CrashAfter = p.crashes[crashed]
		}
		werr, err := r.incarnation(ctx, k, spec, logf)
		switch {
		case err != nil:
			return err
		case werr == nil:
			return nil
		case spec.CrashAfter > 0 && killedBySIGKILL(werr):
			r.inject(string(FaultConsumerCrash), fmt.Sprintf("incarnation %d SIGKILLed itself at delivery %d", k, spec.CrashAfter))
			crashed++
			continue
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

// incarnation runs worker process number k to its end and returns how it
// exited (nil: it finished). The second result is set if it could not start,
// or ctx ended and the incarnation was killed.
func (r *run) incarnation(ctx context.Context, k int, spec WorkerSpec, logf *os.File) (exit, err error) {
	// The spec goes on stdin, not in the arguments or the environment: it
	// may hold a password (ClientProps), which neither ps nor
	// /proc/<pid>/environ should show.
	b, _ := json.Marshal(spec)
	cmd := exec.Command(r.cfg.Worker.Path, r.cfg.Worker.Args...)
	cmd.Env = append(append(os.Environ(), r.cfg.Worker.Env...), WorkerEnv+"="+WorkerSpecOnStdin)
	cmd.Stdin = bytes.NewReader(b)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	fmt.Fprintf(logf, "--- incarnation %d (crash after delivery %d)\n", k, spec.CrashAfter)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case exit = <-exited:
		return exit, nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		return nil, ctx.Err()
	}
}

// killedBySIGKILL reports whether a worker's exit was a SIGKILL: the planned
// crash, which the worker deals itself.
func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// workerSpec is the orders of the mode's worker incarnations.
func (r *run) workerSpec() (WorkerSpec, error) {
	spec := WorkerSpec{
		Scenario: r.scenario.name, Mode: r.mode.mode, Brokers: r.t.brokers, Topic: r.topic, Output: r.output,
		Group: r.group, TxnID: r.group, Deliveries: filepath.Join(r.dir, "deliveries.jsonl"),
		EndFile: filepath.Join(r.dir, "end.json"), Break: r.cfg.Break, ClientProps: r.cfg.ClientProps,
	}
	if r.sink != nil {
		spec.Sink = r.sink.address()
	}
	if r.cfg.Break == BreakBrokerLosesRead {
		px, err := r.t.proxyFor(r.t.brokers[0])
		if err != nil {
			return spec, err
		}
		spec.Via = px.Addr()
		px.Add(verify.Rule{Kind: verify.FaultDropFetchedBatch, APIKey: verify.APIFetch, Count: 1})
		r.inject("broken-broker", "the first fetch response with two batches for a partition loses the first")
	}
	if r.mode.consumerDB || r.scenario.consumerDB {
		spec.DB = filepath.Join(r.dir, "consumer.db")
	}
	return spec, nil
}
