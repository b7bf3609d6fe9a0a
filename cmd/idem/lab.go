package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/idem-dev/idem/internal/clientprops"
	"github.com/idem-dev/idem/internal/lab"
)

// errNotMeasured is returned when a mode could not be measured (it did not
// finish in --duration): not a verdict either way, so it has its own exit
// code.
var errNotMeasured = errors.New("lab: a mode could not be measured")

// labFlags are the flags of `idem lab`.
type labFlags struct {
	scenario, modes, faults string
	n                       int
	seed                    int64
	duration                time.Duration
	asJSON                  bool
	chart                   string
	bootstrap               []string
	props                   []string
	dir                     string
	breakHook               string
}

func newLabCmd() *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Measure what each delivery mode loses and duplicates under injected faults",
		Long: `lab runs the delivery-semantics comparison under faults and prints the table.

Scenario "charge": a producer emits ChargeCustomer events; a consumer (a child
process, so it can be killed with SIGKILL) charges customers at a payment
gateway the lab runs, which counts every charge and honours Idempotency-Key.
Scenario "aggregate": a consumer keeps a running total per customer; the lab
prints its drift from the true total.

Faults (--faults, comma-separated, "all" or "none"):
  lost-ack        a produce response is dropped after the broker applied it
  ack-timeout     a produce response arrives after the producer gave up
  consumer-crash  the consumer is SIGKILLed between its effect and its commit
  broker-kill     the broker is SIGKILLed while the producer sends, then restarted
  pause           the broker is SIGSTOPped long enough for requests to time out

By default lab starts its own broker (idem serve) in a temporary directory so
it can kill it; with --bootstrap it runs against any Kafka-compatible cluster
and skips broker-kill and pause.

With --bootstrap, -X sets a client security property as for the other client
commands (security.protocol, sasl.mechanism, sasl.username, sasl.password,
sasl.oauthbearer.token, ssl.ca.location, ssl.certificate.location,
ssl.key.location, ssl.endpoint.identification.algorithm): every client of
the run connects with them, the lab's and its consumer processes' (which get
them on stdin, not in their arguments or environment). The lab's own broker
listens in plaintext, so -X without --bootstrap is refused. Before the first
mode the lab checks that it can talk to the cluster and stops with the error
(a wrong password, a TLS listener spoken to in plaintext) if not:

  idem lab --bootstrap broker:9093 -X security.protocol=SASL_SSL \
    -X sasl.mechanism=SCRAM-SHA-256 -X sasl.username=lab -X sasl.password=… \
    -X ssl.ca.location=ca.pem

The user needs to create and delete topics, produce (idempotently and
transactionally), consume in groups and share groups, and commit offsets.

Every mode states its promise and the verdict says whether the run kept it.
Exit status: 0 when every mode that ran kept its promise (at-least-once
duplicating is not a broken promise), 1 when a mode broke its promise (or the
lab could not run), 3 when a mode could not be measured within --duration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if !cmd.Flags().Changed("seed") {
				f.seed = time.Now().UnixNano() % 1_000_000
			}
			return runLab(ctx, cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.scenario, "scenario", lab.ScenarioCharge, strings.Join(lab.Scenarios(), " or "))
	fl.StringVar(&f.modes, "mode", "all", "comma-separated modes ("+modesHelp()+")")
	fl.StringVar(&f.faults, "faults", "all", "comma-separated faults, all or none")
	fl.IntVarP(&f.n, "events", "n", 200, "events per mode")
	fl.Int64Var(&f.seed, "seed", 0, "seed of the fault plan (default: random, printed in the report)")
	fl.DurationVar(&f.duration, "duration", 2*time.Minute, "upper bound on each mode's run")
	fl.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	fl.StringVar(&f.chart, "chart", "", "write an SVG bar chart of the table to this file")
	fl.StringSliceVar(&f.bootstrap, "bootstrap", nil, "run against this Kafka-compatible cluster instead of a broker of its own")
	fl.StringArrayVarP(&f.props, "set", "X", nil, "client security property name=value for --bootstrap, as for the client commands (security.protocol, sasl.*, ssl.*); repeatable")
	fl.StringVar(&f.dir, "dir", "", "directory for the run's files (default: a temporary directory, kept only if a promise broke)")
	// Hidden: deliberately break a mode (skip-dedupe, output-outside-txn,
	// broker-duplicates, broker-loses-read) to watch a verdict turn red.
	fl.StringVar(&f.breakHook, "break", "", "deliberately break something, to see a verdict turn red")
	_ = fl.MarkHidden("break")
	return cmd
}

// modesHelp lists each scenario's modes: "charge: a, b; aggregate: c".
func modesHelp() string {
	var parts []string
	for _, sc := range lab.Scenarios() {
		var ms []string
		for _, m := range lab.ModesOf(sc) {
			ms = append(ms, string(m))
		}
		parts = append(parts, sc+": "+strings.Join(ms, ", "))
	}
	return strings.Join(parts, "; ")
}

// runLab runs the lab, prints the report (and writes the chart), and turns
// the verdicts into the exit status: 1 if a mode broke its promise, 3 if a
// mode could not be measured.
func runLab(ctx context.Context, cmd *cobra.Command, f labFlags) error {
	cfg, err := labConfig(f)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	if file, ok := stderr.(*os.File); ok && isTerminal(file) {
		cfg.Progress = progressBar(stderr)
	}
	rep, err := lab.Run(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	if f.asJSON {
		err = lab.WriteJSON(cmd.OutOrStdout(), rep)
	} else {
		err = lab.WriteTable(cmd.OutOrStdout(), rep)
	}
	if err != nil {
		return err
	}
	if f.chart != "" {
		if err := writeChart(f.chart, rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "chart written to %s\n", f.chart)
	}
	switch {
	case rep.Broken():
		return errors.New("lab: a mode broke its own promise (see the verdicts)")
	case rep.Incomplete():
		return &exitError{code: 3, err: errNotMeasured}
	}
	return nil
}

// labConfig turns the flags into the lab's configuration: this binary is
// the broker (idem serve) and the consumer (idem lab-worker).
func labConfig(f labFlags) (lab.Config, error) {
	fs, err := lab.ParseFaults(f.faults)
	if err != nil {
		return lab.Config{}, err
	}
	ms, err := lab.ParseModes(f.scenario, f.modes)
	if err != nil {
		return lab.Config{}, err
	}
	for _, x := range f.props {
		if name, _, _ := strings.Cut(x, "="); name == "brokers" {
			return lab.Config{}, fmt.Errorf("-X %s: the lab takes its cluster with --bootstrap", x)
		}
	}
	props, err := clientprops.ParseSecurity(f.props)
	if err != nil {
		return lab.Config{}, err
	}
	if len(props) > 0 && len(f.bootstrap) == 0 {
		return lab.Config{}, errors.New("-X client properties need --bootstrap: the lab's own broker listens in plaintext on loopback")
	}
	self, err := os.Executable()
	if err != nil {
		return lab.Config{}, err
	}
	return lab.Config{
		Scenario: f.scenario, Modes: ms, Faults: fs, N: f.n, Seed: f.seed, Duration: f.duration,
		Bootstrap: f.bootstrap, ClientProps: props, Dir: f.dir, Break: f.breakHook,
		Worker: lab.Command{Path: self, Args: []string{"lab-worker"}},
		Broker: lab.IdemBroker(self),
	}, nil
}

// writeChart writes the report's SVG chart to path.
func writeChart(path string, rep *lab.Report) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := lab.WriteSVG(file, rep); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

// newLabWorkerCmd is the consumer process the lab starts; its exit status
// is the worker's.
func newLabWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "lab-worker",
		Short:  "The consumer process of idem lab (started by the lab, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if code := lab.WorkerMain(); code != 0 {
				return &exitError{code: code} // the worker said why
			}
			return nil
		},
	}
}

// progressBar draws one line on a terminal: the mode, a bar of events
// produced and effected, and counts.
func progressBar(w io.Writer) func(lab.Progress) {
	return func(p lab.Progress) {
		const width = 30
		done := 0
		if p.N > 0 {
			done = min(width, width*p.Effected/p.N)
		}
		sent := 0
		if p.N > 0 {
			sent = min(width-done, width*p.Sent/p.N-done)
		}
		bar := strings.Repeat("#", done) + strings.Repeat("-", max(0, sent)) + strings.Repeat(" ", max(0, width-done-max(0, sent)))
		fmt.Fprintf(w, "\r\033[Kmode %d/%d %-20s [%s] sent %d, effected %d of %d", p.ModeNum, p.Modes, p.Mode, bar, p.Sent, p.Effected, p.N)
	}
}
