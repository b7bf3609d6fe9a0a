// Package txn holds the end-to-end transaction tests of issue 4 against a
// real broker and real franz-go clients: the transaction APIs on the wire,
// the GroupTransactSession copier, fencing, timeouts, a power loss in the
// middle of commits, the `idem txn` command and the copier's throughput.
// The reliability suites C6 and C7, which share this package's workloads
// through testkit/txnkit, live in test/reliability.
package txn

import "github.com/idem-dev/idem/broker"

// brokerOptions are the settings every broker of these tests runs with:
// no initial rebalance delay, so that a restarted copier starts at once.
func brokerOptions() []broker.Option {
	return []broker.Option{
		broker.WithProperty("group.initial.rebalance.delay.ms", "0"),
	}
}
