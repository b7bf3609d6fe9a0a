// Package txn holds the end-to-end transaction tests of issue 4 against a
// real broker and real franz-go clients: the GroupTransactSession copier,
// C6 (Kafka's transactions_test.py copier with SIGKILLed copiers and
// broker), C7 (KAFKA-17754: requests delayed past the client's timeout by a
// hold-and-release proxy) and a power loss in the middle of commits.
//
// The test binary doubles as the broker process and as the copier process
// (selected by environment variables), so C6 can SIGKILL either without
// building anything.
package txn

import (
	"testing"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// copierEnv selects the copier role: its value is a JSON copierConfig, and
// the copier runs until it is killed.
const copierEnv = "IDEM_TXN_COPIER"

func TestMain(m *testing.M) {
	testkit.Main(m, brokerkit.ChildRole, testkit.Role{Env: copierEnv, Run: runCopierProcess})
}

// noRebalanceDelay lets a restarted copier start at once: the initial
// rebalance delay exists for fleets of consumers, not for tests.
var noRebalanceDelay = map[string]string{"group.initial.rebalance.delay.ms": "0"}

// brokerOptions are the settings every in-process broker of these tests
// runs with (the child brokers get noRebalanceDelay).
func brokerOptions() []broker.Option {
	return []broker.Option{
		broker.WithProperty("group.initial.rebalance.delay.ms", "0"),
	}
}
