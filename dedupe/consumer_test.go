package dedupe_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startBroker runs an idem broker with a 3-partition topic and short group
// timeouts, so a consumer that dies is replaced quickly.
func startBroker(t *testing.T, topics ...string) *brokertest.Broker {
	return brokertest.Run(t, broker.WithTopics(topics...),
		broker.WithProperty("num.partitions", "3"),
		broker.WithProperty("group.min.session.timeout.ms", "500"))
}

// groupOpts are client options for a consumer that must notice rebalances fast.
func groupOpts(addr string) []kgo.Opt {
	return []kgo.Opt{kgo.SeedBrokers(addr), kgo.SessionTimeout(2 * time.Second),
		kgo.HeartbeatInterval(200 * time.Millisecond), kgo.FetchMaxWait(200 * time.Millisecond)}
}

// producePayments sends one record per id, the id in the idempotency-key header.
func producePayments(t *testing.T, cl *kgo.Client, topic string, ids ...string) {
	t.Helper()
	var recs []*kgo.Record
	for _, id := range ids {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(id), Value: []byte("charge " + id),
			Headers: []kgo.RecordHeader{{Key: dedupe.DefaultKeyHeader, Value: []byte(id)}}})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// consumerUnderTest runs a dedupe.Consumer on s whose handler records one
// effect row per event id, and counts settled records.
type consumerUnderTest struct {
	settled atomic.Int64
	runs    atomic.Int64 // handler invocations
	cancel  context.CancelFunc
	done    chan error
}

func startConsumer(t *testing.T, s *storeUnderTest, addr, group, topic string) *consumerUnderTest {
	t.Helper()
	return startConsumerWith(t, s, addr, group, topic, 1, nil)
}

// startConsumerWith also sets MaxBatch and a hook that runs inside the
// handler after its write (nil: none); the hook's error fails the handler.
func startConsumerWith(t *testing.T, s *storeUnderTest, addr, group, topic string, maxBatch int, hook func(*kgo.Record) error) *consumerUnderTest {
	t.Helper()
	return startConsumerOpts(t, s, addr, group, topic, consumerOpts{maxBatch: maxBatch, hook: hook})
}

// consumerOpts are the knobs the consumer tests turn.
type consumerOpts struct {
	maxBatch        int
	hook            func(*kgo.Record) error
	retry           dedupe.RetryPolicy
	deadLetterTopic string
	onEvent         func(dedupe.Event)
}

func startConsumerOpts(t *testing.T, s *storeUnderTest, addr, group, topic string, o consumerOpts) *consumerUnderTest {
	t.Helper()
	maxBatch, hook := o.maxBatch, o.hook
	if o.retry == (dedupe.RetryPolicy{}) {
		o.retry = dedupe.RetryPolicy{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	}
	if hook == nil {
		hook = func(*kgo.Record) error { return nil }
	}
	c := &consumerUnderTest{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	onResult := func(*kgo.Record, dedupe.Result) { c.settled.Add(1) }
	var run func(ctx context.Context) error
	switch st := s.raw.(type) {
	case *sqlitestore.Store:
		cons, err := dedupe.NewConsumer(dedupe.ConsumerConfig[*sql.Tx]{
			Store: st, Group: group, Topics: []string{topic}, ClientOpts: groupOpts(addr), OnResult: onResult,
			MaxBatch: maxBatch, Retry: o.retry, DeadLetterTopic: o.deadLetterTopic, OnEvent: o.onEvent, Logger: quietLogger,
			Handler: func(ctx context.Context, tx *sql.Tx, r *kgo.Record) error {
				c.runs.Add(1)
				if id, ok := dedupe.EventIDFrom(ctx); !ok || id != dedupe.EventID(r, dedupe.DefaultKeyHeader) {
					t.Errorf("EventIDFrom(ctx) = %q, %v; want the claimed id %q", id, ok, dedupe.EventID(r, dedupe.DefaultKeyHeader))
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, dedupe.EventID(r, dedupe.DefaultKeyHeader)); err != nil {
					return err
				}
				return hook(r)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		run = cons.Run
	case *pgstore.Store:
		cons, err := dedupe.NewConsumer(dedupe.ConsumerConfig[pgx.Tx]{
			Store: st, Group: group, Topics: []string{topic}, ClientOpts: groupOpts(addr), OnResult: onResult,
			MaxBatch: maxBatch, Retry: o.retry, DeadLetterTopic: o.deadLetterTopic, OnEvent: o.onEvent, Logger: quietLogger,
			Handler: func(ctx context.Context, tx pgx.Tx, r *kgo.Record) error {
				c.runs.Add(1)
				if id, ok := dedupe.EventIDFrom(ctx); !ok || id != dedupe.EventID(r, dedupe.DefaultKeyHeader) {
					t.Errorf("EventIDFrom(ctx) = %q, %v; want the claimed id %q", id, ok, dedupe.EventID(r, dedupe.DefaultKeyHeader))
				}
				if _, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, dedupe.EventID(r, dedupe.DefaultKeyHeader)); err != nil {
					return err
				}
				return hook(r)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		run = cons.Run
	}
	go func() { c.done <- run(ctx) }()
	t.Cleanup(c.stop)
	return c
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

var stopOnce sync.Map

func (c *consumerUnderTest) stop() {
	if _, done := stopOnce.LoadOrStore(c, true); done {
		return
	}
	c.cancel()
	<-c.done
}

func (c *consumerUnderTest) waitSettled(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.settled.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("settled %d of %d records in 30s", c.settled.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func auditDuplicates(t *testing.T, s *storeUnderTest, ids []string) int64 {
	t.Helper()
	var dups int64
	for _, id := range ids {
		rec, err := s.lookup(context.Background(), id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		dups += rec.Duplicates
	}
	return dups
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func TestConsumerAppliesEachEventOnceAndCountsProducerResends(t *testing.T) {
	for _, maxBatch := range []int{1, 50} {
		t.Run(fmt.Sprintf("MaxBatch=%d", maxBatch), func(t *testing.T) {
			b := startBroker(t, "payments-sqlite", "payments-postgres")
			eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
				topic := "payments-" + s.name
				group := "billing-" + s.name
				events := ids("pay", 30)
				producePayments(t, b.Client(t), topic, events...)
				producePayments(t, b.Client(t), topic, events[:6]...) // a producer retried six sends
				c := startConsumerWith(t, s, b.Addr(), group, topic, maxBatch, nil)
				c.waitSettled(t, 36)
				c.stop()
				for _, id := range events {
					if n := s.effects(t, id); n != 1 {
						t.Errorf("%s applied %d times", id, n)
					}
				}
				if n := c.runs.Load(); n != 30 {
					t.Errorf("handler ran %d times for 30 distinct events", n)
				}
				if d := auditDuplicates(t, s, events); d != 6 {
					t.Errorf("audit trail counts %d suppressed duplicates, want 6", d)
				}
				if got := s.committedRecords(t, group); got != 36 {
					t.Errorf("database offsets cover %d records, want 36", got)
				}
			})
		})
	}
}

// In a batch, one failing handler rolls back its neighbours too; they are
// then settled one by one, so every event still lands once. A permanent
// failure is recorded as rejected and the partition moves on.
func TestConsumerBatchWithFailingHandlersAppliesEachEventOnce(t *testing.T) {
	b := startBroker(t, "flaky-sqlite", "flaky-postgres")
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		topic, group := "flaky-"+s.name, "billing-"+s.name
		events := ids("pay", 20)
		producePayments(t, b.Client(t), topic, events...)
		var mu sync.Mutex
		failures := map[string]int{}
		hook := func(r *kgo.Record) error {
			id := dedupe.EventID(r, dedupe.DefaultKeyHeader)
			mu.Lock()
			defer mu.Unlock()
			switch id {
			case "pay-3", "pay-11": // fail twice, then succeed
				if failures[id] < 2 {
					failures[id]++
					return errors.New("gateway timeout")
				}
			case "pay-7":
				return dedupe.Permanent(errors.New("card declined"))
			}
			return nil
		}
		c := startConsumerWith(t, s, b.Addr(), group, topic, 50, hook)
		c.waitSettled(t, 20)
		c.stop()
		for _, id := range events {
			want := 1
			if id == "pay-7" {
				want = 0
			}
			if n := s.effects(t, id); n != want {
				t.Errorf("%s applied %d times, want %d", id, n, want)
			}
		}
		rec, err := s.lookup(context.Background(), "pay-7")
		if err != nil || rec.Outcome != "rejected: card declined" {
			t.Errorf("pay-7 audit %+v %v; want rejected", rec, err)
		}
		if got := s.committedRecords(t, group); got != 20 {
			t.Errorf("database offsets cover %d records, want 20", got)
		}
	})
}

// Kafka's committed offsets are informational: a consumer restarts from the
// database's, even when someone rewound the group in Kafka.
func TestConsumerResumesFromDatabaseOffsetsNotKafkas(t *testing.T) {
	b := startBroker(t, "payments-sqlite", "payments-postgres")
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		ctx := context.Background()
		topic, group := "payments-"+s.name, "ledger-"+s.name
		first := ids("first-"+s.name, 12)
		producePayments(t, b.Client(t), topic, first...)
		c := startConsumer(t, s, b.Addr(), group, topic)
		c.waitSettled(t, 12)
		c.stop()

		// Rewind the group to the beginning in Kafka.
		adm := kadm.NewClient(b.Client(t))
		ends, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := adm.CommitOffsets(ctx, group, ends.Offsets())
		if err != nil || resp.Error() != nil {
			t.Fatalf("rewinding the group in Kafka: %v %v", err, resp.Error())
		}

		second := ids("second-"+s.name, 5)
		producePayments(t, b.Client(t), topic, second...)
		c2 := startConsumer(t, s, b.Addr(), group, topic)
		c2.waitSettled(t, 5)
		time.Sleep(300 * time.Millisecond) // room for any wrongly redelivered record to show up
		c2.stop()
		if got := c2.settled.Load(); got != 5 {
			t.Fatalf("restarted consumer settled %d records, want only the 5 new ones", got)
		}
		if d := auditDuplicates(t, s, first); d != 0 {
			t.Fatalf("%d old records were redelivered: offsets came from Kafka, not the database", d)
		}
		for _, id := range append(first, second...) {
			if n := s.effects(t, id); n != 1 {
				t.Errorf("%s applied %d times", id, n)
			}
		}
	})
}
