package dedupe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultKeyHeader is the record header whose value is the event id.
const DefaultKeyHeader = "idempotency-key"

// Headers the Consumer adds to a dead letter, besides the event id in
// KeyHeader. The record's key, value and other headers are the original's.
const (
	HeaderDLQTopic     = "idem-dlq-topic"     // the source topic
	HeaderDLQPartition = "idem-dlq-partition" // the source partition
	HeaderDLQOffset    = "idem-dlq-offset"    // the source offset
	HeaderDLQGroup     = "idem-dlq-group"     // the consumer group that gave up
	HeaderDLQAttempts  = "idem-dlq-attempts"  // handler runs before giving up
	HeaderDLQError     = "idem-dlq-error"     // the last handler error
)

// ConsumerConfig configures a Consumer. Store, Group, Topics and Handler are
// required.
type ConsumerConfig[Tx any] struct {
	Store OffsetStore[Tx]
	// Group is the Kafka consumer group, and the key of this consumer's
	// offsets in the database.
	Group  string
	Topics []string
	// Handler processes one record inside the store's transaction. The
	// record's offset commits with its writes. ctx carries the claimed
	// event id (EventIDFrom). Return Permanent(err) to give up on a record
	// at once; any other error, or a panic, rolls the attempt back and
	// retries it after a backoff, holding up its partition (see Retry).
	Handler func(ctx context.Context, tx Tx, r *kgo.Record) error
	// KeyHeader names the header carrying the event id (default
	// "idempotency-key"). A record without it is identified by
	// topic/partition/offset, which catches redeliveries but not a producer
	// that sent the same event twice; and if a topic is deleted and
	// recreated within Retention, its reused offsets would be taken for
	// duplicates (use a new Config.Table, or send the header).
	KeyHeader string
	// ClientOpts are passed to kgo.NewClient (seed brokers, TLS, SASL, …).
	// The consumer sets kgo.OnPartitionsCallbackBlocked itself (to stop
	// polling ahead when a rebalance waits), overriding one given here.
	// Where the consumer starts on a partition the database has no offset
	// for is franz-go's: the group's committed offset in Kafka if there is
	// one, else kgo.ConsumeResetOffset (default: the start of the
	// partition).
	ClientOpts []kgo.Opt
	// Retry is what happens when the handler fails; see RetryPolicy.
	Retry RetryPolicy
	// DeadLetterTopic, if set, receives the records the consumer gives up
	// on: those whose handler returned Permanent, and those that failed
	// Retry.MaxAttempts times (default 5 with a dead-letter topic). The
	// record keeps its key, value and headers; KeyHeader is set to its
	// event id, and the HeaderDLQ* headers name the source topic,
	// partition and offset, the group, the attempts and the last error.
	//
	// Giving up is atomic with the offset: one transaction records the
	// event id as "dead-lettered: <error>", moves the partition's offset
	// past the record and writes the dead letter to an outbox table
	// (<Table>_deadletters). The consumer then produces it and deletes it
	// from the outbox. A crash between the two produces it again on
	// restart, so the guarantee is at least once into the dead-letter
	// topic, never zero times: copies are identical, down to KeyHeader,
	// so a dedupe.Consumer of the dead-letter topic suppresses them.
	DeadLetterTopic string
	// InstanceID is this member's group.instance.id (KIP-345 static
	// membership). After a crash, a restarted member with the same id
	// takes over its partitions at once instead of waiting for the dead
	// member's session to time out (45 s by default). The default derives
	// one from the host name and the lowest free slot among this host's
	// members of the group (a lock file in os.TempDir, released by the
	// kernel when the process dies), so a restarted process gets its
	// predecessor's id and two live processes never share one. A clean
	// stop (ctx done) leaves the group, so its partitions move at once.
	InstanceID string
	// DynamicMembership turns the default static membership off: a
	// restarted member then waits out its predecessor's session timeout.
	DynamicMembership bool
	// MaxBatch > 1 settles up to that many consecutive records of a
	// partition in one transaction: one commit, and on PostgreSQL one
	// round trip to claim them all, which is what makes dedupe nearly free
	// in throughput (see docs/toolkit.md). With a PollBatchStore (SQLite,
	// PostgreSQL), a poll's records of several partitions that fit in
	// MaxBatch together are settled in one transaction. The price: if any handler of the batch fails, the whole
	// batch rolls back and its records are settled again in smaller steps
	// (per partition, then one by one), so the other handlers run again. That is
	// the same re-run a crash causes, so external calls must already be
	// idempotent; but with MaxBatch 1 (the default) a failing record never
	// re-runs its neighbours.
	MaxBatch int
	// BatchHandler, if set, handles the claimed records of a batch
	// (MaxBatch > 1; records of several partitions with a PollBatchStore,
	// each partition's in order) in one call, with their event ids, in the
	// batch's transaction: for a handler that writes many records with one
	// statement (the webhook dispatcher records a batch's deliveries so).
	// Records settled one by one (MaxBatch 1, or after a batch failed) go
	// to Handler, which is still required. The Store must implement
	// ClaimedBatchStore.
	BatchHandler func(ctx context.Context, tx Tx, recs []*kgo.Record, ids []string) error
	// OnResult, if set, is called after each record is settled.
	OnResult func(r *kgo.Record, res Result)
	// OnEvent, if set, is called for every outcome: each record settled
	// (processed, duplicate, rejected, dead-lettered), each failed attempt
	// that will be retried, and each dead letter produced. It runs on the
	// partition's goroutine, so it must be quick and safe for concurrent
	// use; dedupeprom turns it into Prometheus counters.
	OnEvent func(Event)
	Logger  *slog.Logger
}

// RetryPolicy says how often and how fast a failing record is retried.
// The n-th retry waits a random duration between d/2 and d, where
// d = min(MaxBackoff, InitialBackoff·2^(n-1)) (exponential backoff with
// jitter). Only the handler's failures count as attempts: a store error (the
// database is down) is retried with the same backoff, without limit, since
// giving up on the record would need the database too.
//
// Attempts are counted in memory, per record: a restarted consumer counts
// from 1 again. While a record is retried its partition waits, and so does
// the next poll of the consumer's other partitions.
type RetryPolicy struct {
	// MaxAttempts is how many times the handler runs before the consumer
	// gives up on the record. 0 means 5 with a DeadLetterTopic, otherwise
	// never give up (at-least-once never skips a record on its own).
	// Giving up without a DeadLetterTopic records the event id as
	// "rejected: <error>", as Permanent does.
	MaxAttempts int
	// InitialBackoff is the nominal pause before the first retry (default
	// 200 ms).
	InitialBackoff time.Duration
	// MaxBackoff caps the nominal pause (default 30 s).
	MaxBackoff time.Duration
}

// backoff is the pause before retry n (1-based).
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.InitialBackoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// Outcome is what an Event reports.
type Outcome int

const (
	OutcomeProcessed          Outcome = iota + 1 // the handler's writes committed
	OutcomeDuplicate                             // an already processed id; the handler did not run
	OutcomeRejected                              // given up on, recorded as rejected
	OutcomeDeadLettered                          // given up on, queued for the dead-letter topic
	OutcomeRetried                               // an attempt failed and rolled back; it will be retried
	OutcomeDeadLetterProduced                    // a dead letter reached the dead-letter topic
)

func (o Outcome) String() string {
	switch o {
	case OutcomeProcessed:
		return "processed"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeRejected:
		return "rejected"
	case OutcomeDeadLettered:
		return "dead_lettered"
	case OutcomeRetried:
		return "retried"
	case OutcomeDeadLetterProduced:
		return "dead_letter_produced"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Event is one outcome of the Consumer, for ConsumerConfig.OnEvent.
type Event struct {
	Outcome Outcome
	Group   string
	EventID string
	// Topic, Partition and Offset locate the source record.
	Topic     string
	Partition int32
	Offset    int64
	// Attempt is the handler run this event is about (1-based; 0 for a
	// batch settled in one transaction).
	Attempt int
	// Err is the handler's error (retried, rejected, dead-lettered).
	Err error
	// Duration is the time the attempt took (store transaction included).
	Duration time.Duration
}

// Consumer is a Kafka consumer-group member (franz-go) that commits each
// record's offset in the same database transaction as the handler's writes
// and the processed-id claim: "commit the offset in the same transaction as
// the write, so there's no gap".
//
// On start and after every rebalance, the consumer positions each assigned
// partition at the offset stored in the database, ignoring what the group
// committed in Kafka; Kafka commits of the settled offsets are still made
// after each batch, from a goroutine of their own so the next batch does not
// wait for them, but only so lag monitoring works. The positioning happens in kgo.AdjustFetchOffsetsFn,
// which franz-go runs after the assignment (after OnPartitionsAssigned) and
// before the first fetch, so no record is fetched from a stale position; a
// SetOffsets call from OnPartitionsAssigned would race with fetches already
// started from Kafka's offsets.
//
// Concurrency: a batch's partitions are settled in parallel, one goroutine
// per partition, each in offset order. While a batch settles, the consumer
// polls the next (up to 500 records), which starts once all of the previous
// one is settled: per partition, offsets advance in order and a failing
// record is never passed; a rebalance that waits for the records polled
// stops the polling ahead. So a consumer runs at most as many handlers at
// once as it has partitions assigned; run more members of the group (and
// have as many partitions) for more.
//
// Even so, a record can be delivered twice: a producer retry, or a partition
// that moves during a rebalance while its old owner is mid-record. The event
// id claim catches those, and the audit trail counts them.
type Consumer[Tx any] struct {
	cfg     ConsumerConfig[Tx]
	flushMu sync.Mutex // one dead-letter flush at a time
	kick    chan struct{}
	// polled, if set (tests), is told of each poll that returned records,
	// and whether a batch was settling meanwhile.
	polled func(records int, ahead bool)
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
	if cfg.Retry.MaxAttempts < 0 {
		return nil, errors.New("dedupe: RetryPolicy.MaxAttempts is negative")
	}
	if _, ok := cfg.Store.(ClaimedBatchStore[Tx]); cfg.BatchHandler != nil && !ok {
		return nil, errors.New("dedupe: BatchHandler needs a Store that implements ClaimedBatchStore")
	}
	if cfg.Retry.MaxAttempts == 0 && cfg.DeadLetterTopic != "" {
		cfg.Retry.MaxAttempts = 5
	}
	if cfg.Retry.InitialBackoff <= 0 {
		cfg.Retry.InitialBackoff = 200 * time.Millisecond
	}
	if cfg.Retry.MaxBackoff <= 0 {
		cfg.Retry.MaxBackoff = 30 * time.Second
	}
	cfg.Retry.MaxBackoff = max(cfg.Retry.MaxBackoff, cfg.Retry.InitialBackoff)
	for _, t := range cfg.Topics {
		if t == cfg.DeadLetterTopic {
			return nil, errors.New("dedupe: DeadLetterTopic is one of the consumed Topics")
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Consumer[Tx]{cfg: cfg, kick: make(chan struct{}, 1)}, nil
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

type eventIDKey struct{}

// EventIDFrom returns the event id the Consumer claimed for the record whose
// handler received ctx: the same id as EventID(r, KeyHeader), without
// having to repeat the KeyHeader setting.
func EventIDFrom(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(eventIDKey{}).(string)
	return id, ok
}

// Run consumes until ctx is done (then returns nil) or the client fails. It
// leaves the group on return.
func (c *Consumer[Tx]) Run(ctx context.Context) error {
	var opts []kgo.Opt
	instanceID := c.cfg.InstanceID
	if instanceID == "" && !c.cfg.DynamicMembership {
		id, unlock := autoInstanceID(c.cfg.Group)
		defer unlock()
		instanceID = id
	}
	if instanceID != "" && !c.cfg.DynamicMembership {
		opts = append(opts, kgo.InstanceID(instanceID)) // ClientOpts may override it
	}
	opts = append(opts, c.cfg.ClientOpts...)
	blocked := new(atomic.Bool)
	opts = append(opts,
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(c.cfg.Topics...),
		kgo.DisableAutoCommit(),
		// A rebalance waits until the records already polled are settled, so
		// a partition is never revoked in the middle of a batch.
		kgo.BlockRebalanceOnPoll(),
		// A rebalance waiting for the records polled: stop polling ahead.
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) { blocked.Store(true) }),
		kgo.AdjustFetchOffsetsFn(c.adjustOffsets),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("dedupe: consumer: %w", err)
	}
	if v := cl.OptValues(kgo.InstanceID); len(v) == 2 && v[1] == true {
		instanceID = v[0].(string)
	} else {
		instanceID = ""
	}
	defer func() {
		cl.Close()
		if instanceID != "" {
			c.leaveStatic(instanceID)
		}
	}()
	if c.cfg.DeadLetterTopic != "" {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.flushLoop(ctx, cl)
		}()
		defer func() {
			<-done
			// Produce what the last records dead-lettered before leaving.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			c.flushDeadLetters(fctx, cl)
		}()
	}
	commitCtx, stopCommitter := context.WithCancel(ctx)
	committer := c.startCommitter(commitCtx, cl)
	defer func() {
		stopCommitter()
		<-committer.done
	}()
	return c.pollLoop(ctx, cl, committer, blocked)
}

// maxPoll is how many polled records at most wait for the batch being
// settled.
const maxPoll = 500

// pollLoop is a pipeline of two stages: while one batch of polled records
// is being settled (its transactions commit), the loop polls the next, so
// the records that arrive meanwhile are fetched at once rather than after
// the commit, and settled together as soon as it is done. A batch starts
// only after the previous one is settled, all of it (settle retries a
// record until it commits or ctx ends), so per partition the offsets in
// the database advance in order and a failing record is never passed. A
// rebalance waiting on BlockRebalanceOnPoll (blocked is set) stops the
// polling ahead: the batches already polled are settled, then the
// rebalance is let through; so is it whenever the pipeline is empty.
func (c *Consumer[Tx]) pollLoop(ctx context.Context, cl *kgo.Client, committer *informationalCommitter, blocked *atomic.Bool) error {
	var (
		settling *settlement // the batch being settled (nil: none)
		next     pollBatch   // polled while it settles
		settled  = map[string]map[int32]kgo.EpochOffset{}
	)
	for {
		if settling == nil {
			fetches := cl.PollRecords(ctx, maxPoll)
			if ctx.Err() != nil {
				cl.AllowRebalance()
				return nil
			}
			if fetches.IsClientClosed() {
				return errors.New("dedupe: consumer: client closed")
			}
			c.logFetchErrors(fetches, nil)
			c.notePoll(fetches, false)
			next.add(fetches)
			if next.n == 0 {
				blocked.Store(false)
				cl.AllowRebalance()
				continue
			}
			settling, next = c.startSettling(ctx, next), pollBatch{}
			continue
		}
		if !blocked.Load() && next.n < maxPoll {
			pctx, cancel := context.WithCancel(ctx)
			done := settling.done // not settling: the loop changes it
			go func() {
				select {
				case <-done:
					cancel()
				case <-pctx.Done():
				}
			}()
			fetches := cl.PollRecords(pctx, maxPoll-next.n)
			cancel()
			if ctx.Err() == nil && fetches.IsClientClosed() {
				<-settling.done
				return errors.New("dedupe: consumer: client closed")
			}
			c.logFetchErrors(fetches, pctx)
			c.notePoll(fetches, true)
			before := next.n
			next.add(fetches)
			if next.n > before && ctx.Err() == nil && !settling.finished() {
				continue // poll again while the batch settles
			}
		}
		<-settling.done
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		for t, ps := range settling.offsets {
			if settled[t] == nil {
				settled[t] = map[int32]kgo.EpochOffset{}
			}
			maps.Copy(settled[t], ps)
		}
		committer.handOver(assignedOffsets(settled, cl.UncommittedOffsets()))
		settling = nil
		if next.n > 0 {
			settling, next = c.startSettling(ctx, next), pollBatch{}
			continue
		}
		blocked.Store(false)
		cl.AllowRebalance()
	}
}

func (c *Consumer[Tx]) notePoll(fetches kgo.Fetches, ahead bool) {
	if n := fetches.NumRecords(); n > 0 && c.polled != nil {
		c.polled(n, ahead)
	}
}

func (c *Consumer[Tx]) logFetchErrors(fetches kgo.Fetches, pollCtx context.Context) {
	fetches.EachError(func(topic string, partition int32, err error) {
		if pollCtx != nil && pollCtx.Err() != nil && errors.Is(err, pollCtx.Err()) {
			return // the poll ahead was cut short: its batch is settled
		}
		c.cfg.Logger.Warn("dedupe: fetch error", "topic", topic, "partition", partition, "err", err)
	})
}

// pollBatch is the records of one or more polls, by partition, each
// partition's in offset order.
type pollBatch struct {
	parts []partitionRecords
	n     int
}

type partitionRecords struct {
	topic     string
	partition int32
	records   []*kgo.Record
}

func (b *pollBatch) add(fetches kgo.Fetches) {
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		b.n += len(p.Records)
		for i := range b.parts {
			if b.parts[i].topic == p.Topic && b.parts[i].partition == p.Partition {
				b.parts[i].records = append(b.parts[i].records, p.Records...)
				return
			}
		}
		b.parts = append(b.parts, partitionRecords{topic: p.Topic, partition: p.Partition, records: slices.Clip(p.Records)})
	})
}

// settlement is a batch being settled by its own goroutine.
type settlement struct {
	done    chan struct{}
	offsets map[string]map[int32]kgo.EpochOffset // after each partition's last record
}

func (s *settlement) finished() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// assignedOffsets returns the settled positions worth an informational
// commit: those of partitions franz-go still has something to commit for
// (uncommitted: its polled positions ahead of the last commit; a revoked
// partition is no longer there, so a stale position is not committed over
// its new owner's). It forgets the others in settled.
func assignedOffsets(settled, uncommitted map[string]map[int32]kgo.EpochOffset) map[string]map[int32]kgo.EpochOffset {
	out := map[string]map[int32]kgo.EpochOffset{}
	for t, ps := range settled {
		for p, eo := range ps {
			if _, ok := uncommitted[t][p]; !ok {
				delete(ps, p)
				continue
			}
			if out[t] == nil {
				out[t] = map[int32]kgo.EpochOffset{}
			}
			out[t][p] = eo
		}
		if len(ps) == 0 {
			delete(settled, t)
		}
	}
	return out
}

// startSettling settles b from a goroutine: in one transaction when
// settlePoll applies, else its partitions in parallel, each in order, in
// chunks of MaxBatch (and one by one where a chunk fails). done is closed
// when all of b is settled, or ctx is done.
func (c *Consumer[Tx]) startSettling(ctx context.Context, b pollBatch) *settlement {
	s := &settlement{done: make(chan struct{}), offsets: map[string]map[int32]kgo.EpochOffset{}}
	for _, p := range b.parts {
		last := p.records[len(p.records)-1]
		if s.offsets[p.topic] == nil {
			s.offsets[p.topic] = map[int32]kgo.EpochOffset{}
		}
		s.offsets[p.topic][p.partition] = kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}
	}
	go func() {
		defer close(s.done)
		if c.settlePoll(ctx, b) {
			return
		}
		var wg sync.WaitGroup
		for _, p := range b.parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for recs := p.records; len(recs) > 0; {
					chunk := recs[:min(len(recs), c.cfg.MaxBatch)]
					recs = recs[len(chunk):]
					last := chunk[len(chunk)-1]
					pos := Position{Group: c.cfg.Group, Topic: last.Topic, Partition: last.Partition, Next: last.Offset + 1}
					if len(chunk) > 1 && c.settleBatch(ctx, chunk, []Position{pos}) {
						continue
					}
					for _, r := range chunk {
						if !c.settle(ctx, r) {
							return
						}
					}
				}
			}()
		}
		wg.Wait()
	}()
	return s
}

// informationalCommitter commits the offsets of settled polls to Kafka
// from its own goroutine. Those commits are informational only (lag
// monitoring): the database holds the offsets that count, and
// AdjustFetchOffsetsFn positions every assigned partition from it. Waiting
// for the broker's (fsynced) commit before the next poll added its latency
// to every record that arrived meanwhile; now the poll loop hands over the
// latest offsets and goes on, at most one commit is in flight, and a commit
// always follows the last handover, so an idle group's lag still drops to 0.
type informationalCommitter struct {
	latest atomic.Pointer[map[string]map[int32]kgo.EpochOffset]
	kick   chan struct{}
	done   chan struct{}
}

func (c *Consumer[Tx]) startCommitter(ctx context.Context, cl *kgo.Client) *informationalCommitter {
	ic := &informationalCommitter{kick: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(ic.done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ic.kick:
			}
			offsets := ic.latest.Swap(nil)
			if offsets == nil {
				continue
			}
			cl.CommitOffsetsSync(ctx, *offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
				if err == nil && resp != nil {
					for _, t := range resp.Topics {
						for _, p := range t.Partitions {
							if err == nil {
								err = kerr.ErrorForCode(p.ErrorCode)
							}
						}
					}
				}
				if err != nil && ctx.Err() == nil {
					c.cfg.Logger.Warn("dedupe: informational Kafka offset commit failed", "err", err)
				}
			})
		}
	}()
	return ic
}

// handOver records the offsets of a settled poll for the next commit.
func (ic *informationalCommitter) handOver(offsets map[string]map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 {
		return
	}
	ic.latest.Store(&offsets)
	select {
	case ic.kick <- struct{}{}:
	default:
	}
}

// handlerError marks an error as the handler's (an attempt that counts),
// as opposed to the store's. It hides a Permanent error from the store when
// the consumer dead-letters instead (it has no Unwrap on purpose).
type handlerError struct {
	err       error
	permanent bool
}

func (e *handlerError) Error() string { return e.err.Error() }

// wrap runs the handler for r: panics become errors, and handler errors
// are marked, except a Permanent one the store is to record itself.
func (c *Consumer[Tx]) wrap(r *kgo.Record) Handler[Tx] {
	return func(ctx context.Context, tx Tx) (err error) {
		defer func() {
			if p := recover(); p != nil {
				c.cfg.Logger.Error("dedupe: handler panicked", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
					"panic", p, "stack", string(debug.Stack()))
				err = &handlerError{err: fmt.Errorf("handler panicked: %v", p)}
			}
		}()
		err = c.cfg.Handler(ctx, tx, r)
		if err == nil || (IsPermanent(err) && c.cfg.DeadLetterTopic == "") {
			return err
		}
		return &handlerError{err: err, permanent: IsPermanent(err)}
	}
}

func (c *Consumer[Tx]) emit(e Event) {
	if c.cfg.OnEvent != nil {
		e.Group = c.cfg.Group
		c.cfg.OnEvent(e)
	}
}

func (c *Consumer[Tx]) settled(r *kgo.Record, id string, attempt int, res Result, herr error, took time.Duration) {
	var o Outcome
	switch res.Status {
	case Processed:
		o = OutcomeProcessed
	case Duplicate:
		o = OutcomeDuplicate
	case Rejected:
		o = OutcomeRejected
	case DeadLettered:
		o = OutcomeDeadLettered
	}
	c.emit(Event{Outcome: o, EventID: id, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Attempt: attempt, Err: herr, Duration: took})
	if c.cfg.OnResult != nil {
		c.cfg.OnResult(r, res)
	}
}

// settle processes r until it commits (processed, duplicate, rejected or
// dead-lettered); it returns false only when ctx is done.
func (c *Consumer[Tx]) settle(ctx context.Context, r *kgo.Record) bool {
	id := EventID(r, c.cfg.KeyHeader)
	pos := Position{Group: c.cfg.Group, Topic: r.Topic, Partition: r.Partition, Next: r.Offset + 1}
	hctx := context.WithValue(ctx, eventIDKey{}, id)
	h := c.wrap(r)
	log := c.cfg.Logger.With("event", id, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
	attempt, storeFailures := 1, 0
	for {
		start := time.Now()
		res, err := c.cfg.Store.ProcessAt(hctx, id, pos, h)
		took := time.Since(start)
		if err == nil || IsPermanent(err) { // a Permanent error here was recorded by the store
			if err != nil {
				log.Warn("dedupe: record rejected", "err", err)
			}
			c.settled(r, id, attempt, res, err, took)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		var wait time.Duration
		var herr *handlerError
		if errors.As(err, &herr) {
			storeFailures = 0
			if herr.permanent || (c.cfg.Retry.MaxAttempts > 0 && attempt >= c.cfg.Retry.MaxAttempts) {
				return c.giveUp(ctx, r, id, pos, attempt, herr.err, log)
			}
			c.emit(Event{Outcome: OutcomeRetried, EventID: id, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Attempt: attempt, Err: herr.err, Duration: took})
			log.Warn("dedupe: record failed, retrying", "attempt", attempt, "err", herr.err)
			wait = c.cfg.Retry.backoff(attempt)
			attempt++
		} else {
			storeFailures++
			log.Warn("dedupe: store failed, retrying", "err", err)
			wait = c.cfg.Retry.backoff(storeFailures)
		}
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// giveUp records r as rejected or dead-lettered, with its offset, retrying
// the store until it succeeds or ctx is done.
func (c *Consumer[Tx]) giveUp(ctx context.Context, r *kgo.Record, id string, pos Position, attempts int, cause error, log *slog.Logger) bool {
	var dl *DeadLetter
	outcome := "rejected: " + truncate(cause.Error())
	if c.cfg.DeadLetterTopic != "" {
		outcome = "dead-lettered: " + truncate(cause.Error())
		dl = c.deadLetter(r, id, attempts, cause)
	}
	for n := 1; ; n++ {
		start := time.Now()
		res, err := c.cfg.Store.RejectAt(ctx, id, pos, outcome, dl)
		if err == nil {
			log.Warn("dedupe: gave up on record", "attempts", attempts, "outcome", outcome)
			c.settled(r, id, attempts, res, cause, time.Since(start))
			if dl != nil {
				select {
				case c.kick <- struct{}{}:
				default:
				}
			}
			return true
		}
		if ctx.Err() != nil || !sleep(ctx, c.cfg.Retry.backoff(n)) {
			return false
		}
		log.Warn("dedupe: store failed recording a rejection, retrying", "err", err)
	}
}

func truncate(msg string) string {
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return msg
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deadLetter builds r's dead letter: the original record, its event id in
// KeyHeader and the HeaderDLQ* headers.
func (c *Consumer[Tx]) deadLetter(r *kgo.Record, id string, attempts int, cause error) *DeadLetter {
	dl := &DeadLetter{Group: c.cfg.Group, EventID: id, Topic: c.cfg.DeadLetterTopic, Key: r.Key, Value: r.Value}
	ours := map[string]bool{c.cfg.KeyHeader: true, HeaderDLQTopic: true, HeaderDLQPartition: true, HeaderDLQOffset: true,
		HeaderDLQGroup: true, HeaderDLQAttempts: true, HeaderDLQError: true}
	for _, h := range r.Headers {
		if !ours[h.Key] {
			dl.Headers = append(dl.Headers, Header{Key: h.Key, Value: h.Value})
		}
	}
	for _, kv := range [][2]string{{c.cfg.KeyHeader, id}, {HeaderDLQTopic, r.Topic},
		{HeaderDLQPartition, strconv.Itoa(int(r.Partition))}, {HeaderDLQOffset, strconv.FormatInt(r.Offset, 10)},
		{HeaderDLQGroup, c.cfg.Group}, {HeaderDLQAttempts, strconv.Itoa(attempts)}, {HeaderDLQError, truncate(cause.Error())}} {
		dl.Headers = append(dl.Headers, Header{Key: kv[0], Value: []byte(kv[1])})
	}
	return dl
}

// flushLoop produces pending dead letters at start, whenever a record is
// dead-lettered, and every few seconds (after a failed produce). A flush
// under way when ctx ends is finished, not cut between the produce and the
// delete (which would produce that dead letter again).
func (c *Consumer[Tx]) flushLoop(ctx context.Context, cl *kgo.Client) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		c.flushDeadLetters(fctx, cl)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
		}
	}
}

// flushDeadLetters produces the group's pending dead letters, each before
// deleting it from the outbox.
func (c *Consumer[Tx]) flushDeadLetters(ctx context.Context, cl *kgo.Client) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	for ctx.Err() == nil {
		dls, err := c.cfg.Store.PendingDeadLetters(ctx, c.cfg.Group, 100)
		if err != nil {
			c.cfg.Logger.Warn("dedupe: reading pending dead letters failed", "err", err)
			return
		}
		for _, dl := range dls {
			rec := &kgo.Record{Topic: dl.Topic, Key: dl.Key, Value: dl.Value}
			for _, h := range dl.Headers {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
			if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
				c.cfg.Logger.Warn("dedupe: producing a dead letter failed; it stays in the outbox", "topic", dl.Topic, "event", dl.EventID, "err", err)
				return
			}
			c.emit(Event{Outcome: OutcomeDeadLetterProduced, EventID: dl.EventID})
			if err := c.cfg.Store.DeleteDeadLetter(ctx, dl.ID); err != nil {
				c.cfg.Logger.Warn("dedupe: deleting a produced dead letter failed; it will be produced again", "event", dl.EventID, "err", err)
				return
			}
		}
		if len(dls) < 100 {
			return
		}
	}
}

// leaveStatic leaves the group on behalf of a static member after a clean
// stop: franz-go does not leave for a member with an instance id, and its
// partitions would otherwise wait for its session to time out.
func (c *Consumer[Tx]) leaveStatic(instanceID string) {
	var opts []kgo.Opt // the connection options (seeds, TLS, SASL), not the group's
	for _, o := range c.cfg.ClientOpts {
		_, group := o.(kgo.GroupOpt)
		_, consumer := o.(kgo.ConsumerOpt)
		if !group && !consumer {
			opts = append(opts, o)
		}
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		c.cfg.Logger.Debug("dedupe: leaving the group as a static member failed", "err", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = c.cfg.Group
	m := kmsg.NewLeaveGroupRequestMember()
	m.InstanceID = &instanceID
	req.Members = append(req.Members, m)
	if _, err := req.RequestWith(ctx, cl); err != nil {
		c.cfg.Logger.Debug("dedupe: leaving the group as a static member failed; its partitions move after the session timeout", "err", err)
	}
}

// settlePoll settles all of a batch's records in one transaction when the
// store can (PollBatchStore), the records come from several partitions and
// together fit in one batch: the case of a steady trickle, where one commit
// per poll instead of one per partition shortens every record's wait. It
// reports false, with nothing committed, when it does not apply or the
// transaction failed; the per-partition path then runs.
func (c *Consumer[Tx]) settlePoll(ctx context.Context, b pollBatch) bool {
	if _, ok := c.cfg.Store.(PollBatchStore[Tx]); !ok {
		return false
	}
	if len(b.parts) < 2 || b.n > c.cfg.MaxBatch {
		return false
	}
	recs := make([]*kgo.Record, 0, b.n)
	positions := make([]Position, 0, len(b.parts))
	for _, p := range b.parts {
		recs = append(recs, p.records...)
		last := p.records[len(p.records)-1]
		positions = append(positions, Position{Group: c.cfg.Group, Topic: last.Topic, Partition: last.Partition, Next: last.Offset + 1})
	}
	return c.settleBatch(ctx, recs, positions)
}

// settleBatch tries to settle records in one transaction that also stores
// positions: consecutive records of one partition and its position, or
// (settlePoll) the records of several partitions, each partition's in
// order, and one position per partition. On false nothing was committed
// and the caller settles them in smaller steps (ending one by one, which
// also handles permanent errors and retries).
func (c *Consumer[Tx]) settleBatch(ctx context.Context, recs []*kgo.Record, positions []Position) bool {
	ids := make([]string, len(recs))
	hs := make([]Handler[Tx], len(recs))
	for i, r := range recs {
		ids[i] = EventID(r, c.cfg.KeyHeader)
		hs[i] = c.wrap(r)
	}
	// runClaimed runs the handlers of the claimed records in the batch's
	// transaction: the BatchHandler once, or each record's Handler.
	runClaimed := func(ctx context.Context, tx Tx, claimed []int) (err error) {
		if c.cfg.BatchHandler == nil {
			for _, i := range claimed {
				if err := hs[i](context.WithValue(ctx, eventIDKey{}, ids[i]), tx); err != nil {
					return err
				}
			}
			return nil
		}
		defer func() {
			if p := recover(); p != nil {
				c.cfg.Logger.Error("dedupe: batch handler panicked", "panic", p, "stack", string(debug.Stack()))
				err = fmt.Errorf("batch handler panicked: %v", p)
			}
		}()
		rs, cids := make([]*kgo.Record, len(claimed)), make([]string, len(claimed))
		for j, i := range claimed {
			rs[j], cids[j] = recs[i], ids[i]
		}
		return c.cfg.BatchHandler(ctx, tx, rs, cids)
	}
	start := time.Now()
	var results []Result
	var err error
	cs, claimedBatches := c.cfg.Store.(ClaimedBatchStore[Tx])
	switch {
	case len(positions) > 1:
		results, err = c.cfg.Store.(PollBatchStore[Tx]).ProcessClaimedAtPositions(ctx, ids, positions, runClaimed)
	case claimedBatches && c.cfg.BatchHandler != nil:
		results, err = cs.ProcessClaimedAt(ctx, ids, positions[0], runClaimed)
	default:
		results, err = c.cfg.Store.ProcessBatchAt(ctx, ids, positions[0], func(ctx context.Context, tx Tx, i int) error {
			return hs[i](context.WithValue(ctx, eventIDKey{}, ids[i]), tx)
		})
	}
	if err != nil {
		if ctx.Err() == nil {
			c.cfg.Logger.Debug("dedupe: batch failed, settling its records in smaller steps", "records", len(recs), "err", err)
		}
		return false
	}
	took := time.Since(start)
	for i, r := range recs {
		c.settled(r, ids[i], 0, results[i], nil, took)
	}
	return true
}

// adjustOffsets replaces the offsets Kafka has for the newly assigned
// partitions with the database's, where it has any.
func (c *Consumer[Tx]) adjustOffsets(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	stored, err := c.cfg.Store.LoadOffsets(ctx, c.cfg.Group)
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
