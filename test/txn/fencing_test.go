package txn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit/txnkit"
)

// TestZombieIsFenced: a second instance with the same transactional id
// fences the first. The first instance's open transaction is aborted, its
// later writes and its commit are refused, and read_committed sees only what
// the new instance commits.
func TestZombieIsFenced(t *testing.T) {
	b := brokertest.Run(t)
	seeds := []string{b.Addr()}
	txnkit.CreateTopics(t, seeds, 1, "z")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := []kgo.Opt{kgo.TransactionalID("z"), kgo.DefaultProduceTopic("z"), kgo.RetryTimeout(5 * time.Second)}
	zombie := b.Client(t, opts...)
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := zombie.ProduceSync(ctx, &kgo.Record{Value: []byte("zombie-1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	fresh := b.Client(t, opts...)
	if err := fresh.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	// The fresh instance's first write makes it initialise, which fences
	// the zombie and aborts its open transaction.
	if err := fresh.ProduceSync(ctx, &kgo.Record{Value: []byte("fresh-1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	err := zombie.ProduceSync(ctx, &kgo.Record{Value: []byte("zombie-2")}).FirstErr()
	if err == nil {
		t.Fatal("the zombie could still write after a newer instance started")
	}
	if !errors.Is(err, kerr.InvalidProducerEpoch) && !errors.Is(err, kerr.ProducerFenced) {
		t.Logf("zombie write refused with %v", err)
	}
	if err := zombie.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("the zombie committed after a newer instance started")
	}
	if err := fresh.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("the new instance could not commit: %v", err)
	}
	s := txnkit.DrainCommitted(t, seeds, "z", 1, time.Second, 10*time.Second)
	s.Check(t, "read_committed after the fence", []string{"fresh-1"})
}

// TestTimedOutTransactionIsAbortedAndUnblocksReaders: a producer that opens
// a transaction and goes silent holds the partition's last stable offset
// back only until transaction.timeout.ms; the coordinator then aborts it
// (with an epoch bump, so the silent producer is fenced) and read_committed
// readers get past it to what others committed after it.
func TestTimedOutTransactionIsAbortedAndUnblocksReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the coordinator's 10 s timeout pass")
	}
	b := brokertest.Run(t)
	seeds := []string{b.Addr()}
	txnkit.CreateTopics(t, seeds, 1, "to")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	stuck := b.Client(t, kgo.TransactionalID("stuck"), kgo.TransactionTimeout(time.Second), kgo.DefaultProduceTopic("to"))
	if err := stuck.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := stuck.ProduceSync(ctx, &kgo.Record{Value: []byte("never")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	other := b.Client(t, kgo.TransactionalID("other"), kgo.DefaultProduceTopic("to"))
	if err := other.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := other.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := other.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := txnkit.DrainCommitted(t, seeds, "to", 1, time.Second, 25*time.Second)
	t.Logf("the committed record became readable %v after its commit", time.Since(start).Round(100*time.Millisecond))
	s.Check(t, "read_committed after the timeout abort", []string{"after"})
	if err := stuck.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Error("the timed-out producer committed")
	}
}
