package lab_test

import (
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/lab"
)

// The lab's children are this test binary re-executed: a broker (the role
// `idem serve` plays for the real command) or a worker (`idem lab-worker`).
const roleEnv = "IDEM_LAB_TEST_ROLE"

func TestMain(m *testing.M) {
	if os.Getenv(lab.WorkerEnv) != "" {
		os.Exit(lab.WorkerMain())
	}
	if os.Getenv(roleEnv) == "broker" {
		os.Exit(serveBroker(os.Args[len(os.Args)-2], os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

// serveBroker runs an embedded broker until SIGTERM, like `idem serve`.
func serveBroker(dataDir, addr string) int {
	b, err := broker.New(
		broker.WithDataDir(dataDir),
		broker.WithKafkaAddr(addr),
		broker.WithAdminAddr(""),
		broker.WithProperty("group.initial.rebalance.delay.ms", "0"),
		broker.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		os.Stderr.WriteString("test broker: " + err.Error() + "\n")
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	if err := b.Close(); err != nil {
		return 1
	}
	return 0
}

func testConfig(t *testing.T, scenario string, n int, modes ...lab.Mode) lab.Config {
	t.Helper()
	return lab.Config{
		Scenario: scenario, Modes: modes, N: n, Seed: 1, Dir: t.TempDir(),
		Broker: func(dataDir, addr string) lab.Command {
			return lab.Command{Path: os.Args[0], Args: []string{"-test.run=^$", dataDir, addr}, Env: []string{roleEnv + "=broker"}}
		},
		Worker: lab.Command{Path: os.Args[0], Args: []string{"-test.run=^$"}},
		Logf:   t.Logf,
	}
}
