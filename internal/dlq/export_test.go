package dlq

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// What the tests (package dlq_test, outside because the broker they start
// imports the admin API, which imports this package) reach inside for.

// ErrSimulatedCrash is what a run stopped by CrashAfter returns.
var ErrSimulatedCrash = errSimulatedCrash

// CrashAfter makes a run stop after producing n batches without writing
// their ledger entry, as a kill -9 would.
func CrashAfter(o Options, n int) Options {
	o.crashAfter = n
	return o
}

// ReadAll reads a topic from its start to its current end.
func ReadAll(ctx context.Context, cl *kgo.Client, topic string, fn func(*kgo.Record)) error {
	return read(ctx, cl, topic, fromStart, func(r *kgo.Record) bool { fn(r); return true })
}
