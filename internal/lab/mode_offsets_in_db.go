package lab

// Offsets in the database: the consumer keeps its input offsets in the
// same SQLite transaction as its writes and the processed ids
// (dedupe.Consumer), so an effect and the fact that it happened commit
// together; the consumer group's own commits are never used.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/dedupe"
)

// OffsetsInDB keeps the consumer's offsets in the database transaction
// with its writes and the processed ids (dedupe.Consumer).
const OffsetsInDB Mode = "offsets-in-db"

func init() {
	registerMode(&modeSpec{
		mode:     OffsetsInDB,
		producer: producerSpec{acks: kgo.AllISRAcks()},
		promise: promiseSpec{words: func(sc *scenarioSpec) string {
			return "no acknowledged event lost, no " + sc.twice + " (" + sc.atomic + " in one DB transaction)"
		}},
		consumerDB: true,
		consume:    consumeOffsetsInDB,
	})
}

// consumeOffsetsInDB runs dedupe.Consumer until everything is settled:
// offsets, processed ids and the effect's writes commit in one SQLite
// transaction.
func consumeOffsetsInDB(ctx context.Context, w *worker) error {
	w.loadDBOffsets(ctx)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the watcher ends when ctx does
	wg.Add(1)
	go func() { // stop once everything is settled
		defer wg.Done()
		for !w.done() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		cancel()
	}()
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[*sql.Tx]{
		Store: w.db, Group: w.spec.Group, Topics: []string{w.spec.Topic},
		ClientOpts: w.clientOpts(),
		Retry:      dedupe.RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: func(ctx context.Context, tx *sql.Tx, r *kgo.Record) error {
			var e Event
			if err := json.Unmarshal(r.Value, &e); err != nil {
				return dedupe.Permanent(err)
			}
			w.delivered(r, e)
			return w.applyInTx(ctx, tx, e)
		},
		OnResult: func(r *kgo.Record, res dedupe.Result) {
			if res.Status == dedupe.Duplicate {
				// Suppressed before the handler ran: still a delivery.
				var e Event
				if json.Unmarshal(r.Value, &e) == nil {
					w.delivered(r, e)
				}
			}
			w.settled(r)
		},
	})
	if err != nil {
		return err
	}
	err = c.Run(ctx)
	if w.done() {
		return nil
	}
	if err == nil {
		err = errors.New("consumer stopped before the end")
	}
	return err
}

// loadDBOffsets starts the positions at the offsets the database holds, so
// an incarnation that has nothing left to do knows it.
func (w *worker) loadDBOffsets(ctx context.Context) {
	rows, err := w.db.DB().QueryContext(ctx, `SELECT partition_id, next_offset FROM idem_processed_offsets WHERE consumer_group = ? AND topic = ?`, w.spec.Group, w.spec.Topic)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var p int32
		var next int64
		if rows.Scan(&p, &next) == nil {
			w.pos[p] = next
		}
	}
}
