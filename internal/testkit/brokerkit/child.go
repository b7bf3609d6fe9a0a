package brokerkit

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/verify"
)

// childEnv names the variable that makes a re-executed test binary run a
// broker; its value is a Child as JSON.
const childEnv = "IDEM_TESTKIT_BROKER"

// ChildRole lets a test binary double as a broker process: list it in the
// package's TestMain, testkit.Main(m, brokerkit.ChildRole), and start
// brokers with Child.
var ChildRole = testkit.Role{Env: childEnv, Run: runChild}

// Child is a broker that runs in a child process, the test binary
// re-executed (see ChildRole), until SIGTERM (a graceful close) or SIGKILL.
// Kill -9 tests need a real process: only a process death shows what
// survives in the page cache and on disk, and what a client sees when every
// connection drops at once. Re-executing the test binary saves building the
// idem binary (testkit.BuildBinary does that when a test needs the real
// command line).
type Child struct {
	// Addr is the host:port the broker listens on. It is fixed (see
	// verify.FreeAddr) so that a restarted child listens where clients
	// already connect.
	Addr    string `json:"addr"`
	DataDir string `json:"data_dir"`
	// Advertised, if set, is the address metadata names instead of Addr,
	// e.g. a fault proxy in front of the broker.
	Advertised string `json:"advertised,omitempty"`
	// Properties are broker properties by their Kafka names.
	Properties map[string]string `json:"properties,omitempty"`
	// Quiet discards the broker's log; otherwise Info and above go to
	// stderr, which Process sends to its output.
	Quiet bool `json:"quiet,omitempty"`
}

// Env is the environment entry that makes the test binary run c.
func (c Child) Env() string {
	spec, err := json.Marshal(c)
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return childEnv + "=" + string(spec)
}

// Command returns the executable, its arguments and the extra environment
// that start c. The arguments select no test, so a binary whose TestMain
// does not know ChildRole exits at once instead of running its tests.
func (c Child) Command() (path string, args, env []string) {
	return os.Args[0], []string{"-test.run=^$"}, []string{c.Env()}
}

// Process returns a process that starts c and restarts it on the same
// address and data directory; output, if not nil, receives its log.
func (c Child) Process(output io.Writer) *verify.Process {
	path, args, env := c.Command()
	return &verify.Process{Path: path, Args: args, Env: env, Addr: c.Addr, Output: output}
}

// runChild serves the broker described by spec until SIGTERM or SIGINT.
func runChild(spec string) int {
	var c Child
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", childEnv, spec, err)
		return 2
	}
	var logger *slog.Logger
	if c.Quiet {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	} else {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	opts := []broker.Option{
		broker.WithDataDir(c.DataDir),
		broker.WithKafkaAddr(c.Addr),
		broker.WithAdminAddr(""),
		broker.WithLogger(logger),
	}
	if c.Advertised != "" {
		opts = append(opts, broker.WithAdvertisedAddr(c.Advertised))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Properties)) {
		opts = append(opts, broker.WithProperty(name, c.Properties[name]))
	}
	b, err := broker.New(opts...)
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "child broker failed to start: %v\n", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	if err := b.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "child broker close: %v\n", err)
		return 1
	}
	return 0
}
