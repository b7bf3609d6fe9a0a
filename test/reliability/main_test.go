// Package reliability gathers the reliability suites of
// docs/reliability.md that can run against idem from outside: C4
// (kill -9 with idempotent producers), C6 (a transactional copier and the
// broker SIGKILLed), C7 (requests held past the client's timeout) and C8
// (read_committed across segment rolls, a restart and a power loss).
// C5 (a transactional queue workload judged by the log checker) lives here
// too, and so does the soak that runs its workload for hours under kill -9,
// power losses, full disks and connection floods (soak_test.go). README.md
// says what each suite proves, where C9 lives and how long each takes.
//
// The test binary doubles as the broker process (brokerkit.ChildRole) and
// as the copier process (txnkit.CopierRole), so the suites can SIGKILL
// either without building anything; the soak's process mode builds the
// idem binary, to run the real `idem serve`.
package reliability

import (
	"testing"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
	"github.com/idem-dev/idem/internal/testkit/txnkit"
)

func TestMain(m *testing.M) {
	testkit.Main(m, brokerkit.ChildRole, txnkit.CopierRole, shareConsumerRole)
}

// noRebalanceDelay lets a restarted copier rejoin its group at once: the
// initial rebalance delay exists for fleets of consumers, not for tests.
var noRebalanceDelay = map[string]string{"group.initial.rebalance.delay.ms": "0"}

// brokerOptions are the same setting for an in-process broker.
func brokerOptions() []broker.Option {
	return []broker.Option{broker.WithProperty("group.initial.rebalance.delay.ms", "0")}
}
