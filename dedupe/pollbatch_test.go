package dedupe_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
)

// TestConsumerSettlesAPollOfSeveralPartitionsInOneTransaction: the records
// of several partitions that one poll returns share one transaction, which
// stores every partition's offset; a handler failure rolls it back and the
// records are settled in smaller steps, each event still applied once.
func TestConsumerSettlesAPollOfSeveralPartitionsInOneTransaction(t *testing.T) {
	b := startBroker(t, "pollbatch-sqlite", "pollbatch-postgres") // 3 partitions each
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		topic := "pollbatch-" + s.name
		switch st := s.raw.(type) {
		case *sqlitestore.Store:
			settleOnePoll(t, b.Addr(), topic, s, st, func(ctx context.Context, tx *sql.Tx, id string) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, id)
				return err
			})
		case *pgstore.Store:
			settleOnePoll(t, b.Addr(), topic, s, st, func(ctx context.Context, tx pgx.Tx, id string) error {
				_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, id)
				return err
			})
		}
	})
}

func settleOnePoll[Tx comparable](t *testing.T, addr, topic string, s *storeUnderTest, st dedupe.PollBatchStore[Tx], effect func(context.Context, Tx, string) error) {
	// The first 30 are in the topic before the consumer starts, so its
	// first poll holds all three partitions' records; the last 10, one of
	// which fails once, come after, so the failure's fallback cannot stand
	// in for that first poll.
	events := ids("evt", 40)
	cl := brokerClient(t, addr)
	producePayments(t, cl, topic, events[:30]...) // keys spread them over the partitions
	var (
		mu         sync.Mutex
		partsOfTx  = map[Tx]map[int32]bool{}
		failedOnce atomic.Bool
		settled    atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[Tx]{Store: st, Group: topic, Topics: []string{topic},
		ClientOpts: groupOpts(addr), MaxBatch: 100, Logger: quietLogger,
		OnResult: func(*kgo.Record, dedupe.Result) { settled.Add(1) },
		Handler: func(ctx context.Context, tx Tx, r *kgo.Record) error {
			id, _ := dedupe.EventIDFrom(ctx)
			if id == events[37] && failedOnce.CompareAndSwap(false, true) {
				return errors.New("fails the first time")
			}
			mu.Lock()
			if partsOfTx[tx] == nil {
				partsOfTx[tx] = map[int32]bool{}
			}
			partsOfTx[tx][r.Partition] = true
			mu.Unlock()
			return effect(ctx, tx, id)
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for settled.Load() < 30 {
		select {
		case err := <-done:
			t.Fatalf("consumer stopped: %v", err)
		default:
		}
		testSleep()
	}
	producePayments(t, cl, topic, events[30:]...)
	for settled.Load() < int64(len(events)) {
		select {
		case err := <-done:
			t.Fatalf("consumer stopped: %v", err)
		default:
		}
		testSleep()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	for _, id := range events {
		if n := s.effects(t, id); n != 1 {
			t.Errorf("%s applied %d times", id, n)
		}
	}
	if !failedOnce.Load() {
		t.Error("the failing handler never ran")
	}
	mu.Lock()
	spanning := 0
	for _, parts := range partsOfTx {
		if len(parts) > 1 {
			spanning++
		}
	}
	mu.Unlock()
	if spanning == 0 {
		t.Errorf("no transaction held records of more than one partition: %d transactions", len(partsOfTx))
	}
	offsets, err := st.LoadOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, next := range offsets[topic] {
		stored += next
	}
	if len(offsets[topic]) != 3 || stored != int64(len(events)) {
		t.Errorf("stored offsets %v, want all 3 partitions, %d records in all", offsets, len(events))
	}
}

func brokerClient(t *testing.T, addr string) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
