package lab

// The idempotent consumer: at-least-once delivery plus the dedupe package
// (processed event ids in SQLite, claimed in the same transaction as the
// consumer's own writes) plus the event id as the effect's idempotency key.
// It sees every redelivery at-least-once sees and changes the world once.

import (
	"context"
	"database/sql"

	"github.com/twmb/franz-go/pkg/kgo"
)

// IdempotentConsumer is at-least-once plus the dedupe package (processed
// event ids in SQLite, in the same transaction as the consumer's own
// writes) plus the event id as the gateway's Idempotency-Key.
const IdempotentConsumer Mode = "idempotent-consumer"

func init() {
	registerMode(&modeSpec{
		mode:     IdempotentConsumer,
		producer: producerSpec{acks: kgo.AllISRAcks()},
		promise: promiseSpec{words: func(sc *scenarioSpec) string {
			return "no acknowledged event lost, no " + sc.twice + " (dedupe + idempotency key)"
		}},
		consumerDB: true,
		consume:    func(ctx context.Context, w *worker) error { return w.consumeCommitting(ctx, applyOnceThenCommit) },
	})
}

// applyOnceThenCommit is the textbook "processed ids" consumer done right:
// claim the event id, perform the effect with the id as its idempotency
// key, record it, all in one database transaction (dedupe.Process), then
// commit the offset. A crash after the effect rolls the claim back; the
// redelivery performs the effect again with the same key and its target
// replays instead of repeating it.
func applyOnceThenCommit(ctx context.Context, w *worker, e Event, crashHere bool, commit func() error) error {
	if w.spec.Break == BreakSkipDedupe {
		// Deliberately broken: no processed-id check, no idempotency key.
		if err := w.apply(ctx, e, ""); err != nil {
			return err
		}
		if crashHere {
			crash()
		}
	} else if err := retry(ctx, func() error {
		_, err := w.db.Process(ctx, e.ID, func(ctx context.Context, tx *sql.Tx) error {
			return w.applyInTx(ctx, tx, e)
		})
		return err
	}); err != nil {
		return err
	}
	_ = commit()
	return nil
}
