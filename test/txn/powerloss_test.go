package txn

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
	"github.com/idem-dev/idem/internal/testkit/txnkit"
)

// TestPowerLossInTheMiddleOfCommits runs the broker in process on a
// crash-simulating file system while a transactional producer commits and
// aborts back to back, and cuts the power (only fsynced bytes survive) at
// random moments, restarting the broker on what is left each time. After
// the last restart, read_committed must show every committed transaction
// whole, no aborted value, and no transaction torn: the coordinator's
// decision, the markers and the data must agree after every crash.
func TestPowerLossInTheMiddleOfCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 30 seconds")
	}
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, append(brokerOptions(), brokerkit.WithFS(mem))...)
	seeds := []string{b.Addr()}
	txnkit.CreateTopics(t, seeds, 2, "pl")

	const crashes = 4
	h := txnkit.NewHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		txnkit.Producer(ctx, t, seeds, "pl", "pl-producer", 1<<30, h, nil)
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range crashes {
		// Let some transactions finish between crashes.
		start := h.Count(txnkit.Committed) + h.Count(txnkit.Aborted)
		for ctx.Err() == nil && h.Count(txnkit.Committed)+h.Count(txnkit.Aborted) < start+5 {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // somewhere inside a commit
		t.Logf("power loss %d after %d confirmed transactions", i+1, h.Count(txnkit.Committed)+h.Count(txnkit.Aborted))
		mem = brokerkit.CrashRestart(t, b, mem, true)
	}
	// Let the producer confirm a few more after the last restart, then stop.
	start := h.Count(txnkit.Committed) + h.Count(txnkit.Aborted)
	for ctx.Err() == nil && h.Count(txnkit.Committed)+h.Count(txnkit.Aborted) < start+5 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	<-done
	txnkit.CheckOutcomes(t, seeds, "pl", h)
	txnkit.CheckNoHangingTransactions(t, seeds, "pl", 5*time.Second)
}
