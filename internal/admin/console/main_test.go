package console_test

import (
	"os"
	"testing"

	"github.com/idem-dev/idem/internal/lab"
	"github.com/idem-dev/idem/internal/testkit"
)

// The lab runs the console starts are this test binary re-executed: as the
// lab runner (the role `idem lab-worker` plays with lab.RunnerEnv set) and
// as the runner's consumer processes. IDEM_LAB_EXECUTABLE points every
// broker of the tests at it.
func TestMain(m *testing.M) {
	runner := testkit.Role{Env: lab.RunnerEnv, Run: func(string) int { return lab.RunnerMain() }}
	worker := testkit.Role{Env: lab.WorkerEnv, Run: func(string) int { return lab.WorkerMain() }}
	if self, err := os.Executable(); err == nil {
		os.Setenv("IDEM_LAB_EXECUTABLE", self)
	}
	testkit.Main(m, runner, worker)
}
