package reliability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
	"github.com/idem-dev/idem/internal/testkit/txnkit"
	"github.com/idem-dev/idem/internal/verify"
	"github.com/idem-dev/idem/internal/verify/verifytest"
)

// TestC6CopierSurvivesKill9 is C6 of docs/reliability.md, the port of
// Kafka's tests/kafkatest/tests/core/transactions_test.py: 20,000 values are
// copied from "in" to "out" by two transactional copiers (each a child
// process) in transactions of at most 100 records with a third of them
// aborted on purpose (the copier then rewinds to its committed offsets).
// As the copy progresses the copiers are SIGKILLed three times and the
// broker three times, then the broker is bounced cleanly (SIGTERM) once,
// each restarted on the same transactional ids and data directory. A read_committed consumer reads "out" during the whole copy
// and a fresh one afterwards: both must see exactly the input, each value
// once, and each output partition must hold its input partition's values
// in their order.
func TestC6CopierSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("C6 runs for up to 90 seconds")
	}
	const copiers = 2
	var (
		n          = testkit.Soak(20000, 200000)
		budget     = testkit.Soak(80*time.Second, 15*time.Minute)
		killPoints = testkit.Soak(7, 31) // alternate copier and broker kills; the last point is a clean broker bounce
	)
	seed := verifytest.Seed(t)
	dataDir, logDir := t.TempDir(), t.TempDir()
	addr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	brokerLog, err := os.Create(filepath.Join(logDir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer brokerLog.Close()
	brk := brokerkit.Child{Addr: addr, DataDir: dataDir, Properties: noRebalanceDelay}.Process(brokerLog)
	t.Cleanup(func() { _ = brk.Kill() })
	if err := brk.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	seeds := []string{addr}
	txnkit.CreateTopics(t, seeds, 2, "in", "out")
	input := txnkit.Numbers(n)
	txnkit.SeedInput(t, seeds, "in", input)

	procs := make([]*verify.Process, copiers)
	for i := range procs {
		out, err := os.Create(filepath.Join(logDir, fmt.Sprintf("copier-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		procs[i] = txnkit.CopierConfig{
			Seeds: seeds, In: "in", Out: "out", Group: "c6",
			TxnID: fmt.Sprint("c6-copier-", i), InstanceID: fmt.Sprint("c6-copier-", i),
			Batch: 100, AbortRate: 1.0 / 3, Seed: uint64(seed) + uint64(i),
		}.Process(out)
		p := procs[i]
		t.Cleanup(func() { _ = p.Kill() })
		if err := p.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	concurrent := txnkit.NewSeen()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The reader outlives broker kills: franz-go reconnects by itself.
		if err := txnkit.ReadCommitted(ctx, seeds, "out", concurrent); err != nil {
			t.Errorf("concurrent reader: %v", err)
		}
	}()

	copierKills, brokerKills, copierExits, cleanBounces := 0, 0, 0, 0
	// waitFor waits until the reader has seen target values, restarting a
	// copier that stopped by itself (a fatal client error; logged in its log).
	waitFor := func(target int) {
		for ctx.Err() == nil && concurrent.Distinct() < target {
			for i, p := range procs {
				if !p.Running() {
					copierExits++
					t.Logf("copier %d exited by itself; restarting it (see %s)", i, logDir)
					_ = p.Kill()
					if err := p.Start(context.Background()); err != nil {
						t.Fatalf("restart copier: %v", err)
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for k := 1; k <= killPoints && ctx.Err() == nil; k++ {
		waitFor(n * k / (killPoints + 2))
		if ctx.Err() != nil {
			break
		}
		if k == killPoints {
			t.Logf("progress %d/%d: SIGTERM broker (clean bounce)", concurrent.Distinct(), n)
			if err := brk.Stop(20 * time.Second); err != nil {
				t.Errorf("graceful broker shutdown: %v", err)
			}
			if err := brk.Start(context.Background()); err != nil {
				t.Fatalf("restart broker: %v (log in %s)", err, logDir)
			}
			cleanBounces++
			continue
		}
		if k%2 == 1 {
			p := procs[copierKills%copiers]
			t.Logf("progress %d/%d: SIGKILL copier %d", concurrent.Distinct(), n, copierKills%copiers)
			if err := p.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := p.Start(context.Background()); err != nil {
				t.Fatalf("restart copier: %v", err)
			}
			copierKills++
		} else {
			t.Logf("progress %d/%d: SIGKILL broker", concurrent.Distinct(), n)
			if err := brk.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := brk.Start(context.Background()); err != nil {
				t.Fatalf("restart broker: %v (log in %s)", err, logDir)
			}
			brokerKills++
		}
	}
	waitFor(n)
	time.Sleep(time.Second) // late duplicates would show now
	for _, p := range procs {
		_ = p.Stop(5 * time.Second)
	}
	cancel()
	wg.Wait()
	t.Logf("copier kills %d, broker kills %d, clean broker bounces %d, copier exits %d, concurrent reader saw %d distinct values",
		copierKills, brokerKills, cleanBounces, copierExits, concurrent.Distinct())
	if copierKills < 3 || brokerKills < 3 || cleanBounces < 1 {
		t.Errorf("only %d copier kills, %d broker kills and %d clean bounces: the copy did not progress enough in %v",
			copierKills, brokerKills, cleanBounces, budget)
	}
	concurrent.Check(t, "concurrent read_committed consumer", input)
	final := txnkit.DrainCommitted(t, seeds, "out", n, time.Second, testkit.Soak(20*time.Second, 2*time.Minute))
	final.Check(t, "read_committed drain after the copy", input)
	txnkit.CheckOrder(t, txnkit.DrainCommitted(t, seeds, "in", n, 0, testkit.Soak(20*time.Second, 2*time.Minute)), final)
	if t.Failed() {
		t.Logf("broker and copier logs: %s; data: %s", logDir, dataDir)
		keepDirs(t, logDir, dataDir)
	}
}

// keepDirs copies dirs somewhere that outlives the test, for a post-mortem.
func keepDirs(t *testing.T, dirs ...string) {
	dst, err := os.MkdirTemp("", "idem-"+t.Name()+"-")
	if err != nil {
		return
	}
	for i, d := range dirs {
		_ = os.CopyFS(filepath.Join(dst, fmt.Sprint(i)), os.DirFS(d))
	}
	t.Logf("kept for inspection in %s", dst)
}
