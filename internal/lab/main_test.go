package lab_test

import (
	"os"
	"testing"

	"github.com/idem-dev/idem/internal/lab"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// The lab's children are this test binary re-executed: a broker (the role
// `idem serve` plays for the real command) or a worker (`idem lab-worker`).
func TestMain(m *testing.M) {
	worker := testkit.Role{Env: lab.WorkerEnv, Run: func(string) int { return lab.WorkerMain() }}
	testkit.Main(m, brokerkit.ChildRole, worker)
}

// labBroker is the lab's broker as a child process, like `idem serve`.
func labBroker(dataDir, addr string) brokerkit.Child {
	return brokerkit.Child{Addr: addr, DataDir: dataDir, Quiet: true,
		Properties: map[string]string{"group.initial.rebalance.delay.ms": "0"}}
}

func testConfig(t *testing.T, scenario string, n int, modes ...lab.Mode) lab.Config {
	t.Helper()
	return lab.Config{
		Scenario: scenario, Modes: modes, N: n, Seed: 1, Dir: t.TempDir(),
		Broker: func(dataDir, addr string) lab.Command {
			path, args, env := labBroker(dataDir, addr).Command()
			return lab.Command{Path: path, Args: args, Env: env}
		},
		Worker: lab.Command{Path: os.Args[0], Args: []string{"-test.run=^$"}},
		Logf:   t.Logf,
	}
}
