package lab

// At-least-once: the consumer commits after the effect; the producer
// retries until acknowledged (acks=all) without idempotence. It never loses
// and may duplicate: a lost acknowledgement is an event written twice, and a
// crash between the effect and the commit is a redelivery. This is the
// textbook naive consumer.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// AtLeastOnce processes, then commits; the producer retries until
// acknowledged (acks=all) without idempotence: the textbook naive consumer.
const AtLeastOnce Mode = "at-least-once"

func init() {
	registerMode(&modeSpec{
		mode:     AtLeastOnce,
		producer: producerSpec{acks: kgo.AllISRAcks()},
		promise: promiseSpec{
			words:        func(*scenarioSpec) string { return "no acknowledged event lost; duplicates allowed" },
			mayDuplicate: true,
		},
		consume: func(ctx context.Context, w *worker) error { return w.consumeCommitting(ctx, applyThenCommit) },
	})
}

// applyThenCommit performs the effect, then commits.
func applyThenCommit(ctx context.Context, w *worker, e Event, crashHere bool, commit func() error) error {
	if err := w.apply(ctx, e, ""); err != nil {
		return err
	}
	if crashHere {
		crash() // effect happened, commit never does: redelivered
	}
	_ = commit() // a failed commit means a redelivery later, which at-least-once allows
	return nil
}
