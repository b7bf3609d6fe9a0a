package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// TestC8ReadCommittedAcrossSegmentRolls (reliability check C8): two
// transactional producers and a plain one interleave on one partition whose
// segments roll every few batches; transactions commit or abort at random; the
// broker restarts (cleanly, then after a power loss) half-way. Then:
//   - read_uncommitted returns every acknowledged record exactly once, aborted
//     ones included;
//   - read_committed returns exactly the read_uncommitted list with the
//     aborted transactions' records removed, in the same order.
func TestC8ReadCommittedAcrossSegmentRolls(t *testing.T) {
	// Every goroutine the broker starts must end with it, as in package
	// broker's tests (registered first, so it runs after the broker's own
	// cleanup; goroutines of earlier tests are not this test's).
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, brokerkit.WithFS(mem), broker.WithDataDir("/data"),
		broker.WithProperty("log.segment.bytes", "2048"), broker.WithTopics("c8"))
	rng := rand.New(rand.NewPCG(8, 8))

	var (
		mu      sync.Mutex
		aborted = map[string]bool{} // values written in aborted transactions
		written = map[string]bool{} // every acknowledged value
	)
	runProducer := func(id string, txns int, restartAt func(int)) {
		cl := b.Client(t, kgo.TransactionalID(id), kgo.DefaultProduceTopic("c8"), kgo.TransactionTimeout(20*time.Second))
		ctx := testkit.Context(t, 30*time.Second)
		for n := range txns {
			restartAt(n)
			if err := cl.BeginTransaction(); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			commit := rng.IntN(3) != 0
			mu.Unlock()
			var vals []string
			for i := range 1 + n%4 {
				v := fmt.Sprintf("%s-t%d-%d", id, n, i)
				if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
					t.Error(err)
					return
				}
				vals = append(vals, v)
			}
			if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			for _, v := range vals {
				written[v] = true
				aborted[v] = !commit
			}
			mu.Unlock()
		}
	}
	plain := func(count int) {
		cl := b.Client(t, kgo.DefaultProduceTopic("c8"))
		for i := range count {
			v := fmt.Sprintf("plain-%d", i)
			if err := cl.ProduceSync(testkit.Context(t, 30*time.Second), &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			written[v] = true
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}
	phase := func() {
		var wg sync.WaitGroup
		for _, id := range []string{"tA", "tB"} {
			wg.Add(1)
			go func() { defer wg.Done(); runProducer(id, 12, func(int) {}) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); plain(40) }()
		wg.Wait()
	}
	phase()
	b.Restart(t) // clean: producer state and aborted index from the snapshot
	phase2 := func(prefix string) {
		var wg sync.WaitGroup
		for _, id := range []string{prefix + "A", prefix + "B"} {
			wg.Add(1)
			go func() { defer wg.Done(); runProducer(id, 12, func(int) {}) }()
		}
		wg.Wait()
	}
	phase2("u")
	brokerkit.CrashRestart(t, b, mem, true) // power loss: rebuilt by replaying the log
	phase2("v")
	if t.Failed() {
		t.FailNow()
	}

	read := func(level kgo.IsolationLevel) []string {
		cl := b.Client(t, kgo.ConsumeTopics("c8"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(level), kgo.FetchMaxBytes(3000), kgo.FetchMaxPartitionBytes(3000))
		var out []string
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			fs := cl.PollFetches(ctx)
			cancel()
			fs.EachError(func(_ string, _ int32, err error) {
				if err != context.DeadlineExceeded {
					t.Fatalf("fetch: %v", err)
				}
			})
			if fs.NumRecords() == 0 {
				return out
			}
			fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
		}
	}
	all := read(kgo.ReadUncommitted())
	committed := read(kgo.ReadCommitted())

	seen := map[string]bool{}
	var want []string
	for _, v := range all {
		if seen[v] {
			t.Fatalf("read_uncommitted: duplicate %s", v)
		}
		seen[v] = true
		if !aborted[v] {
			want = append(want, v)
		}
	}
	for v := range written {
		if !seen[v] {
			t.Fatalf("acknowledged %s missing from read_uncommitted", v)
		}
	}
	if strings.Join(committed, ",") != strings.Join(want, ",") {
		t.Fatalf("read_committed differs from read_uncommitted minus aborted:\n got %d: %v\nwant %d: %v", len(committed), committed, len(want), want)
	}
	nAborted := 0
	for _, a := range aborted {
		if a {
			nAborted++
		}
	}
	if nAborted == 0 || nAborted == len(aborted) {
		t.Fatalf("%d of %d transactional records aborted: the mix is not exercised", nAborted, len(aborted))
	}
	t.Logf("%d records (%d aborted) across segment rolls, restart and power loss; read_committed exact", len(all), nAborted)
}
