package txn

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit/txnkit"
)

// TestGroupTransactSessionCopier: two franz-go GroupTransactSession copiers
// in one group copy 3,000 values in transactions, a fifth of them aborted on
// purpose; a read_committed consumer running during the copy and one
// reading afterwards each see every input value exactly once.
func TestGroupTransactSessionCopier(t *testing.T) {
	b := brokertest.Run(t, brokerOptions()...)
	seeds := []string{b.Addr()}
	const n = 3000
	txnkit.CreateTopics(t, seeds, 2, "in", "out")
	input := txnkit.Numbers(n)
	txnkit.SeedInput(t, seeds, "in", input)

	concurrent := txnkit.NewSeen()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := txnkit.ReadCommitted(ctx, seeds, "out", concurrent); err != nil {
			t.Errorf("concurrent reader: %v", err)
		}
	}()
	copyCtx, stopCopy := context.WithCancel(ctx)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := txnkit.RunCopier(copyCtx, txnkit.CopierConfig{
				Seeds: seeds, In: "in", Out: "out", Group: "copiers",
				TxnID: fmt.Sprint("copier-", i), InstanceID: fmt.Sprint("copier-", i),
				Batch: 100, AbortRate: 0.2, Seed: uint64(i + 1),
			}, t.Logf)
			if err != nil {
				t.Errorf("copier %d: %v", i, err)
			}
		}()
	}
	for ctx.Err() == nil && concurrent.Distinct() < n {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a late duplicate would show now
	stopCopy()
	cancel()
	wg.Wait()
	concurrent.Check(t, "concurrent read_committed consumer", input)
	final := txnkit.DrainCommitted(t, seeds, "out", n, time.Second, 30*time.Second)
	final.Check(t, "read_committed drain after the copy", input)
	txnkit.CheckOrder(t, txnkit.DrainCommitted(t, seeds, "in", n, 0, 30*time.Second), final)
}
