package dedupe_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
)

func sqliteEffect(ctx context.Context, tx *sql.Tx, id string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, id)
	return err
}

func pgEffect(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, id)
	return err
}

// eachPollBatchStore runs fn with the store's concrete type.
func eachPollBatchStore(t *testing.T, b interface{ Addr() string }, prefix string,
	sqliteFn func(t *testing.T, s *storeUnderTest, st *sqlitestore.Store, topic string),
	pgFn func(t *testing.T, s *storeUnderTest, st *pgstore.Store, topic string)) {
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		topic := prefix + "-" + s.name
		switch st := s.raw.(type) {
		case *sqlitestore.Store:
			sqliteFn(t, s, st, topic)
		case *pgstore.Store:
			pgFn(t, s, st, topic)
		}
	})
}

// runUntil runs c until settled reaches n, failing if the consumer stops
// first or it takes 30 s, then stops it.
func runUntil[Tx any](t *testing.T, c *dedupe.Consumer[Tx], settled *atomic.Int64, n int64, whileRunning func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	if whileRunning != nil {
		whileRunning()
	}
	deadline := time.Now().Add(30 * time.Second)
	for settled.Load() < n {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("consumer stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("settled %d of %d records in 30s", settled.Load(), n)
		}
		testSleep()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestConsumerPollsTheNextBatchWhileOneSettles: the records that arrive
// while a batch is being settled are polled meanwhile, not only once its
// transaction has committed. The first record's handler does not return
// until the consumer has polled the records produced after it started, so
// without the poll ahead it would wait its 30 s out and fail.
func TestConsumerPollsTheNextBatchWhileOneSettles(t *testing.T) {
	b := startBroker(t, "ahead-sqlite", "ahead-postgres")
	eachPollBatchStore(t, b, "ahead",
		func(t *testing.T, s *storeUnderTest, st *sqlitestore.Store, topic string) {
			pollAhead(t, b.Addr(), topic, s, st, sqliteEffect)
		},
		func(t *testing.T, s *storeUnderTest, st *pgstore.Store, topic string) {
			pollAhead(t, b.Addr(), topic, s, st, pgEffect)
		})
}

func pollAhead[Tx any](t *testing.T, addr, topic string, s *storeUnderTest, st dedupe.OffsetStore[Tx], effect func(context.Context, Tx, string) error) {
	events := ids(topic, 8)
	cl := brokerClient(t, addr)
	producePayments(t, cl, topic, events[0])
	var settled atomic.Int64
	entered, polledAhead := make(chan struct{}), make(chan struct{})
	var enterOnce, aheadOnce sync.Once
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[Tx]{Store: st, Group: topic, Topics: []string{topic},
		ClientOpts: groupOpts(addr), MaxBatch: 100, Logger: quietLogger,
		OnResult: func(*kgo.Record, dedupe.Result) { settled.Add(1) },
		Handler: func(ctx context.Context, tx Tx, r *kgo.Record) error {
			id, _ := dedupe.EventIDFrom(ctx)
			if id == events[0] {
				enterOnce.Do(func() { close(entered) })
				select {
				case <-polledAhead:
				case <-time.After(30 * time.Second):
					t.Error("the consumer did not poll while the first record was being settled")
				}
			}
			return effect(ctx, tx, id)
		}})
	if err != nil {
		t.Fatal(err)
	}
	var aheadRecords atomic.Int64
	dedupe.SetPollHook(c, func(n int, ahead bool) {
		if ahead {
			aheadRecords.Add(int64(n))
			aheadOnce.Do(func() { close(polledAhead) })
		}
	})
	runUntil(t, c, &settled, int64(len(events)), func() {
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the first record's handler never ran")
		}
		producePayments(t, cl, topic, events[1:]...)
	})
	if aheadRecords.Load() == 0 {
		t.Error("no records were polled ahead")
	}
	assertEachSettledOnce(t, s, topic, events)
}

// TestConsumerPipelineNeverPassesAFailingRecord: while a record fails and
// is retried, the records after it keep arriving and are polled ahead, but
// none of its partition is settled before it: when it finally succeeds,
// its partition's stored offset has not moved past it; every partition's
// records are settled in offset order, each applied once.
func TestConsumerPipelineNeverPassesAFailingRecord(t *testing.T) {
	for _, maxBatch := range []int{1, 50} {
		t.Run(fmt.Sprintf("MaxBatch=%d", maxBatch), func(t *testing.T) {
			b := startBroker(t, "passing-sqlite", "passing-postgres")
			eachPollBatchStore(t, b, "passing",
				func(t *testing.T, s *storeUnderTest, st *sqlitestore.Store, topic string) {
					neverPasses(t, b.Addr(), topic, maxBatch, s, st, sqliteEffect)
				},
				func(t *testing.T, s *storeUnderTest, st *pgstore.Store, topic string) {
					neverPasses(t, b.Addr(), topic, maxBatch, s, st, pgEffect)
				})
		})
	}
}

func neverPasses[Tx any](t *testing.T, addr, topic string, maxBatch int, s *storeUnderTest, st dedupe.OffsetStore[Tx], effect func(context.Context, Tx, string) error) {
	events := ids(topic, 60)
	failing := events[4]
	cl := brokerClient(t, addr)
	producePayments(t, cl, topic, events[:10]...)
	var (
		settled  atomic.Int64
		failures atomic.Int32
		mu       sync.Mutex
		last     = map[int32]int64{}
	)
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[Tx]{Store: st, Group: topic, Topics: []string{topic},
		ClientOpts: groupOpts(addr), MaxBatch: maxBatch, Logger: quietLogger,
		Retry: dedupe.RetryPolicy{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
		OnResult: func(r *kgo.Record, _ dedupe.Result) {
			mu.Lock()
			if prev, ok := last[r.Partition]; ok && r.Offset <= prev {
				t.Errorf("partition %d: offset %d settled after %d", r.Partition, r.Offset, prev)
			}
			last[r.Partition] = r.Offset
			mu.Unlock()
			settled.Add(1)
		},
		Handler: func(ctx context.Context, tx Tx, r *kgo.Record) error {
			id, _ := dedupe.EventIDFrom(ctx)
			if id == failing {
				if failures.Load() < 5 {
					if failures.Add(1) == 1 {
						// More records, some behind this one, while it fails.
						producePayments(t, cl, topic, events[10:]...)
					}
					return errors.New("not yet")
				}
				offsets, err := st.LoadOffsets(ctx, topic)
				if err != nil {
					return err
				}
				if next, ok := offsets[topic][r.Partition]; ok && next > r.Offset {
					t.Errorf("partition %d's stored offset is %d, past the failing record at %d", r.Partition, next, r.Offset)
				}
			}
			return effect(ctx, tx, id)
		}})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, c, &settled, int64(len(events)), nil)
	if failures.Load() != 5 {
		t.Errorf("the failing record failed %d times, want 5", failures.Load())
	}
	assertEachSettledOnce(t, s, topic, events)
}

// TestConsumerRebalanceWaitsForThePolledAheadRecords: a member joins while
// the first one polls ahead of its settling; the rebalance waits until
// every record the first member polled is settled (checked as its
// partitions are revoked), and no record runs twice.
func TestConsumerRebalanceWaitsForThePolledAheadRecords(t *testing.T) {
	b := startBroker(t, "joining-sqlite", "joining-postgres")
	eachPollBatchStore(t, b, "joining",
		func(t *testing.T, s *storeUnderTest, st *sqlitestore.Store, topic string) {
			joinWhilePipelining(t, b.Addr(), topic, s, st, sqliteEffect)
		},
		func(t *testing.T, s *storeUnderTest, st *pgstore.Store, topic string) {
			joinWhilePipelining(t, b.Addr(), topic, s, st, pgEffect)
		})
}

func joinWhilePipelining[Tx any](t *testing.T, addr, topic string, s *storeUnderTest, st dedupe.OffsetStore[Tx], effect func(context.Context, Tx, string) error) {
	events := ids(topic, 300)
	cl := brokerClient(t, addr)
	var settled, runs atomic.Int64
	var polled1, settled1, revokes1 atomic.Int64
	var stopping atomic.Bool
	member := func(first bool) *dedupe.Consumer[Tx] {
		opts := groupOpts(addr)
		if first {
			opts = append(opts, kgo.OnPartitionsRevoked(func(context.Context, *kgo.Client, map[string][]int32) {
				if stopping.Load() {
					return
				}
				revokes1.Add(1)
				if p, s := polled1.Load(), settled1.Load(); p != s {
					t.Errorf("partitions revoked with %d of %d polled records settled", s, p)
				}
			}))
		}
		c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[Tx]{Store: st, Group: topic, Topics: []string{topic},
			ClientOpts: opts, MaxBatch: 20, Logger: quietLogger, DynamicMembership: true,
			OnResult: func(*kgo.Record, dedupe.Result) {
				if first {
					settled1.Add(1)
				}
				settled.Add(1)
			},
			Handler: func(ctx context.Context, tx Tx, r *kgo.Record) error {
				runs.Add(1)
				time.Sleep(time.Millisecond) // batches take a while: polls ahead happen
				id, _ := dedupe.EventIDFrom(ctx)
				return effect(ctx, tx, id)
			}})
		if err != nil {
			t.Fatal(err)
		}
		if first {
			dedupe.SetPollHook(c, func(n int, _ bool) { polled1.Add(int64(n)) })
		}
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	go func() { done <- member(true).Run(ctx) }()
	for i := 0; i < len(events); i += 10 {
		producePayments(t, cl, topic, events[i:i+10]...)
		if i == 100 {
			go func() { done <- member(false).Run(ctx) }()
		}
		time.Sleep(10 * time.Millisecond)
	}
	deadline := time.Now().Add(30 * time.Second)
	for settled.Load() < int64(len(events)) && time.Now().Before(deadline) {
		testSleep()
	}
	stopping.Store(true)
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := settled.Load(); got != int64(len(events)) {
		t.Fatalf("settled %d of %d records", got, len(events))
	}
	if revokes1.Load() == 0 {
		t.Error("the first member never had partitions revoked: the second did not join")
	}
	if n := runs.Load(); n != int64(len(events)) {
		t.Errorf("handlers ran %d times for %d events", n, len(events))
	}
	assertEachSettledOnce(t, s, topic, events)
}

// TestConsumerCommitsSettledOffsetsToKafkaForLag: the informational Kafka
// commit follows the settled records, so once a group is idle its
// committed offsets in Kafka are the database's and its lag is 0.
func TestConsumerCommitsSettledOffsetsToKafkaForLag(t *testing.T) {
	b := startBroker(t, "lag-sqlite", "lag-postgres")
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		topic, group := "lag-"+s.name, "lag-"+s.name
		events := ids(topic, 40)
		producePayments(t, b.Client(t), topic, events[:20]...)
		c := startConsumerWith(t, s, b.Addr(), group, topic, 10, nil)
		c.waitSettled(t, 20)
		producePayments(t, b.Client(t), topic, events[20:]...)
		c.waitSettled(t, 40)
		adm := kadm.NewClient(b.Client(t))
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := adm.FetchOffsets(context.Background(), group)
			if err != nil {
				t.Fatal(err)
			}
			var committed int64
			resp.Each(func(o kadm.OffsetResponse) { committed += o.At })
			if committed == 40 {
				break
			}
			if committed > 40 || time.Now().After(deadline) {
				t.Fatalf("Kafka has offsets %v committed for the group, want 40 records' worth", resp.Offsets())
			}
			testSleep()
		}
		c.stop()
		if got := s.committedRecords(t, group); got != 40 {
			t.Errorf("database offsets cover %d records, want 40", got)
		}
	})
}

// assertEachSettledOnce: every event's effect applied exactly once, and the
// database's offsets cover every record of the topic.
func assertEachSettledOnce(t *testing.T, s *storeUnderTest, topic string, events []string) {
	t.Helper()
	for _, id := range events {
		if n := s.effects(t, id); n != 1 {
			t.Errorf("%s applied %d times", id, n)
		}
	}
	if got := s.committedRecords(t, topic); got != int64(len(events)) {
		t.Errorf("database offsets cover %d records, want %d", got, len(events))
	}
}
