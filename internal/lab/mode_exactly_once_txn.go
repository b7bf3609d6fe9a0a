package lab

// Exactly-once with a Kafka transaction: consume-transform-produce (franz-go's
// GroupTransactSession). Each polled batch's output records and its input
// offsets commit in one Kafka transaction; the effect is the output record,
// read with read_committed. A crash before the commit leaves the transaction
// open; the next incarnation, with the same transactional id, fences it and
// it aborts, so its output is never visible and its inputs are consumed
// again.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ExactlyOnceTxn is transactional consume-transform-produce: the effect
// is a record in an output topic, committed with the input offsets in one
// Kafka transaction and read with read_committed.
const ExactlyOnceTxn Mode = "exactly-once-txn"

func init() {
	registerMode(&modeSpec{
		mode: ExactlyOnceTxn,
		// The idempotent producer: retries never duplicate in the log.
		producer: producerSpec{idempotent: true},
		promise: promiseSpec{words: func(*scenarioSpec) string {
			return "every acknowledged event in the output exactly once (Kafka transaction, read_committed)"
		}},
		needsTransactions: true,
		effectsInOutput:   true,
		consume:           consumeTransactionally,
	})
}

// consumeTransactionally runs one transaction per polled batch until
// everything is settled.
func consumeTransactionally(ctx context.Context, w *worker) error {
	sess, err := kgo.NewGroupTransactSession(append(w.groupOpts(),
		kgo.TransactionalID(w.spec.TxnID),
		kgo.TransactionTimeout(10*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic(w.spec.Output),
	)...)
	if err != nil {
		return err
	}
	defer sess.Close()
	// Initialise the transactional producer id now: that fences the
	// previous incarnation and aborts the transaction it left open. Done
	// lazily (at the first produce), the stable offset fetch below would
	// wait for that very transaction until it timed out.
	if err := retry(ctx, func() error { _, _, err := sess.Client().ProducerID(ctx); return err }); err != nil {
		return err
	}
	if err := retry(ctx, func() error { return w.loadCommitted(ctx, sess.Client()) }); err != nil {
		return err
	}
	produce := func(out *kgo.Record) error { sess.Produce(ctx, out, nil); return nil }
	if w.spec.Break == BreakOutputOutsideTxn {
		// Deliberately broken: the output goes through a plain producer.
		outside, err := kgo.NewClient(w.connOpts(kgo.DefaultProduceTopic(w.spec.Output))...)
		if err != nil {
			return err
		}
		defer outside.Close()
		produce = func(out *kgo.Record) error { return outside.ProduceSync(ctx, out).FirstErr() }
	}
	var transform func(Event) []byte // the scenario's state, restored from the committed output
	for !w.done() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := sess.PollRecords(pctx, 100)
		cancel()
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return err
		}
		if transform == nil {
			// The first poll fetched the group's offsets with RequireStable
			// (franz-go always asks for it), so every earlier transaction is
			// resolved and the committed output is exactly the state those
			// offsets belong to.
			if transform, err = w.scenario.newTransform(ctx, w); err != nil {
				return err
			}
		}
		ids, err := w.transformBatch(ctx, sess, recs, transform, produce)
		if err != nil {
			return err
		}
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil {
			// Not retryable (franz-go's contract): this incarnation ends
			// and the next one fences whatever it left open.
			return fmt.Errorf("end transaction: %w", err)
		}
		if committed {
			w.emit(deliveryLine{Committed: ids})
			for _, r := range recs {
				w.settled(r)
			}
		} else {
			transform = nil // aborted: consumption rewinds, so does the state
		}
	}
	return nil
}

// transformBatch produces the output of one polled batch inside the open
// transaction and returns the events it covers. At the planned crash point
// the output reaches the broker, uncommitted, and the process dies.
func (w *worker) transformBatch(ctx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record, transform func(Event) []byte, produce func(*kgo.Record) error) ([]string, error) {
	var ids []string
	for _, r := range recs {
		var e Event
		if json.Unmarshal(r.Value, &e) != nil {
			continue
		}
		crashHere := w.delivered(r, e)
		if err := produce(&kgo.Record{Key: []byte(e.Customer), Value: transform(e)}); err != nil {
			return nil, err
		}
		ids = append(ids, e.ID)
		if crashHere {
			_ = sess.Client().Flush(ctx) // the output records reach the broker, uncommitted
			crash()
		}
	}
	return ids, nil
}
