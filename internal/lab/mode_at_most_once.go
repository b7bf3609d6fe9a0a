package lab

// At-most-once: the consumer commits the offset before the effect; the
// producer makes one attempt with acks=1. It never duplicates and may lose:
// an event committed and then not processed (the crash point), or skipped
// because its commit failed, is gone.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// AtMostOnce commits the offset before processing; the producer makes one
// attempt with acks=1.
const AtMostOnce Mode = "at-most-once"

func init() {
	registerMode(&modeSpec{
		mode: AtMostOnce,
		// One try, leader ack: never a duplicate from the producer.
		producer: producerSpec{acks: kgo.LeaderAck(), oneTry: true},
		promise: promiseSpec{
			words:   func(sc *scenarioSpec) string { return "no " + sc.twice + "; losing events is allowed" },
			mayLose: true,
		},
		consume: func(ctx context.Context, w *worker) error { return w.consumeCommitting(ctx, commitThenApply) },
	})
}

// commitThenApply commits first. If the commit fails the event is skipped:
// processing it could not be undone if the commit had in fact gone through.
func commitThenApply(ctx context.Context, w *worker, e Event, crashHere bool, commit func() error) error {
	if err := commit(); err != nil {
		return nil
	}
	if crashHere {
		crash() // committed, effect never happens: lost
	}
	return w.apply(ctx, e, "")
}
