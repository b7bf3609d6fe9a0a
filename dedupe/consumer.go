package dedupe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// OffsetStore is a Store that can also keep a consumer's Kafka offsets in
// its database. [*SQLite] and [*Postgres] implement it; the unexported
// methods keep the offsets table an implementation detail.
type OffsetStore[Tx any] interface {
	Store[Tx]
	process(ctx context.Context, eventID string, pos *position, h Handler[Tx]) (Result, error)
	processBatch(ctx context.Context, ids []string, pos *position, run func(ctx context.Context, tx Tx, i int) error) ([]Result, error)
	loadOffsets(ctx context.Context, group string) (map[string]map[int32]int64, error)
}

// position is the offset a consumer resumes from after a record: the
// record's offset + 1, Kafka's convention for committed offsets.
type position struct {
	group     string
	topic     string
	partition int32
	next      int64
}

// The offsets table sits next to the processed-ids table. Offsets only move
// forward, so a zombie consumer that lost its partition in a rebalance and
// commits late cannot rewind its successor.
func offsetsDDL(t string) string {
	return `CREATE TABLE IF NOT EXISTS ` + t + `_offsets (
		consumer_group TEXT NOT NULL,
		topic          TEXT NOT NULL,
		partition_id   INTEGER NOT NULL,
		next_offset    BIGINT NOT NULL,
		PRIMARY KEY (consumer_group, topic, partition_id)
	)`
}

func storeOffsetSQL(t string) string {
	return `INSERT INTO ` + t + `_offsets (consumer_group, topic, partition_id, next_offset) VALUES ($1, $2, $3, $4)
		ON CONFLICT (consumer_group, topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset
		WHERE ` + t + `_offsets.next_offset < excluded.next_offset`
}

func loadOffsetsSQL(t string) string {
	return `SELECT topic, partition_id, next_offset FROM ` + t + `_offsets WHERE consumer_group = $1`
}

// DefaultKeyHeader is the record header whose value is the event id.
const DefaultKeyHeader = "idempotency-key"

// ConsumerConfig configures a Consumer. Store, Group, Topics and Handler are
// required.
type ConsumerConfig[Tx any] struct {
	Store OffsetStore[Tx]
	// Group is the Kafka consumer group, and the key of this consumer's
	// offsets in the database.
	Group  string
	Topics []string
	// Handler processes one record inside the store's transaction. The
	// record's offset commits with its writes. Return Permanent(err) to skip
	// a record for good (recorded as rejected); any other error retries it
	// after RetryBackoff, holding up its partition: at-least-once never
	// skips a record on its own.
	Handler func(ctx context.Context, tx Tx, r *kgo.Record) error
	// KeyHeader names the header carrying the event id (default
	// "idempotency-key"). A record without it is identified by
	// topic/partition/offset, which catches redeliveries but not a producer
	// that sent the same event twice; and if a topic is deleted and
	// recreated within Retention, its reused offsets would be taken for
	// duplicates (use a new Config.Table, or send the header).
	KeyHeader string
	// ClientOpts are passed to kgo.NewClient (seed brokers, TLS, SASL, …).
	ClientOpts []kgo.Opt
	// RetryBackoff is the pause before a failed record is retried (default 1 s).
	RetryBackoff time.Duration
	// MaxBatch > 1 settles up to that many consecutive records of a
	// partition in one transaction: one commit, and on PostgreSQL one
	// round trip to claim them all, which is what makes dedupe nearly free
	// in throughput (see docs/toolkit.md). The price: if any handler of the
	// batch fails, the whole batch rolls back and its records are settled
	// again one by one, so the other handlers run a second time. That is
	// the same re-run a crash causes, so external calls must already be
	// idempotent; but with MaxBatch 1 (the default) a failing record never
	// re-runs its neighbours.
	MaxBatch int
	// OnResult, if set, is called after each record is settled.
	OnResult func(r *kgo.Record, res Result)
	Logger   *slog.Logger
}

// Consumer is a Kafka consumer-group member (franz-go) that commits each
// record's offset in the same database transaction as the handler's writes
// and the processed-id claim: "commit the offset in the same transaction as
// the write, so there's no gap".
//
// On start and after every rebalance, the consumer positions each assigned
// partition at the offset stored in the database, ignoring what the group
// committed in Kafka; Kafka commits are still made after each batch, but only
// so lag monitoring works. The positioning happens in kgo.AdjustFetchOffsetsFn,
// which franz-go runs after the assignment (after OnPartitionsAssigned) and
// before the first fetch, so no record is fetched from a stale position; a
// SetOffsets call from OnPartitionsAssigned would race with fetches already
// started from Kafka's offsets.
//
// Even so, a record can be delivered twice: a producer retry, or a partition
// that moves during a rebalance while its old owner is mid-record. The event
// id claim catches those, and the audit trail counts them.
type Consumer[Tx any] struct {
	cfg ConsumerConfig[Tx]
}

// NewConsumer validates cfg.
func NewConsumer[Tx any](cfg ConsumerConfig[Tx]) (*Consumer[Tx], error) {
	if cfg.Store == nil || cfg.Group == "" || len(cfg.Topics) == 0 || cfg.Handler == nil {
		return nil, errors.New("dedupe: ConsumerConfig needs Store, Group, Topics and Handler")
	}
	if cfg.KeyHeader == "" {
		cfg.KeyHeader = DefaultKeyHeader
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Consumer[Tx]{cfg: cfg}, nil
}

// EventID returns the id Process is called with for r: the value of the
// header named key, else "topic/partition/offset".
func EventID(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key && len(h.Value) > 0 {
			return string(h.Value)
		}
	}
	return r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
}

// Run consumes until ctx is done (then returns nil) or the client fails. It
// leaves the group on return.
func (c *Consumer[Tx]) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{}, c.cfg.ClientOpts...)
	opts = append(opts,
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(c.cfg.Topics...),
		kgo.DisableAutoCommit(),
		// A rebalance waits until the records already polled are settled, so
		// a partition is never revoked in the middle of a batch.
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(c.adjustOffsets),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("dedupe: consumer: %w", err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollRecords(ctx, 500)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		if fetches.IsClientClosed() {
			return errors.New("dedupe: consumer: client closed")
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			c.cfg.Logger.Warn("dedupe: fetch error", "topic", topic, "partition", partition, "err", err)
		})
		// Partitions are independent: process them in parallel, each in order.
		var wg sync.WaitGroup
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for recs := p.Records; len(recs) > 0; {
					chunk := recs[:min(len(recs), c.cfg.MaxBatch)]
					recs = recs[len(chunk):]
					if len(chunk) > 1 && c.settleBatch(ctx, chunk) {
						continue
					}
					for _, r := range chunk {
						if !c.settle(ctx, r) {
							return
						}
					}
				}
			}()
		})
		wg.Wait()
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		// Informational only: the database holds the offsets that count.
		if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("dedupe: informational Kafka offset commit failed", "err", err)
		}
		cl.AllowRebalance()
	}
}

// settle processes r until it commits (processed, duplicate or rejected);
// it returns false only when ctx is done.
func (c *Consumer[Tx]) settle(ctx context.Context, r *kgo.Record) bool {
	id := EventID(r, c.cfg.KeyHeader)
	pos := &position{group: c.cfg.Group, topic: r.Topic, partition: r.Partition, next: r.Offset + 1}
	for {
		res, err := c.cfg.Store.process(ctx, id, pos, func(ctx context.Context, tx Tx) error {
			return c.cfg.Handler(ctx, tx, r)
		})
		if err == nil || IsPermanent(err) {
			if err != nil {
				c.cfg.Logger.Warn("dedupe: record rejected", "event", id, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			}
			if c.cfg.OnResult != nil {
				c.cfg.OnResult(r, res)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.cfg.Logger.Warn("dedupe: record failed, retrying", "event", id, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(c.cfg.RetryBackoff):
		}
	}
}

// settleBatch tries to settle records (consecutive, one partition) in one
// transaction. On false nothing was committed and the caller settles them
// one by one (which also handles permanent errors and retries).
func (c *Consumer[Tx]) settleBatch(ctx context.Context, recs []*kgo.Record) bool {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = EventID(r, c.cfg.KeyHeader)
	}
	last := recs[len(recs)-1]
	pos := &position{group: c.cfg.Group, topic: last.Topic, partition: last.Partition, next: last.Offset + 1}
	results, err := c.cfg.Store.processBatch(ctx, ids, pos, func(ctx context.Context, tx Tx, i int) error {
		return c.cfg.Handler(ctx, tx, recs[i])
	})
	if err != nil {
		if ctx.Err() == nil {
			c.cfg.Logger.Debug("dedupe: batch failed, settling its records one by one", "records", len(recs), "err", err)
		}
		return false
	}
	if c.cfg.OnResult != nil {
		for i, r := range recs {
			c.cfg.OnResult(r, results[i])
		}
	}
	return true
}

// adjustOffsets replaces the offsets Kafka has for the newly assigned
// partitions with the database's, where it has any.
func (c *Consumer[Tx]) adjustOffsets(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	stored, err := c.cfg.Store.loadOffsets(ctx, c.cfg.Group)
	if err != nil {
		return nil, err
	}
	for topic, parts := range assigned {
		for p := range parts {
			if next, ok := stored[topic][p]; ok {
				parts[p] = kgo.NewOffset().At(next)
			}
		}
	}
	return assigned, nil
}
