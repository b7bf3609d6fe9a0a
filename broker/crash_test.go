package broker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// TestCrashesLoseNoAcknowledgedRecord is an in-process version of the C4
// check: idempotent acks=all producers keep producing while the broker
// crashes (alternately kill -9 and power loss, simulated on MemFS) and
// restarts. Every acknowledged record must be there exactly once, in each
// producer's order per partition.
func TestCrashesLoseNoAcknowledgedRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop")
	}
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, brokerkit.WithFS(mem), broker.WithDataDir("/data"),
		broker.WithProperty("num.partitions", "3"), broker.WithTopics("c4"))

	const producers = 2
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for p := range producers {
		cl := b.Client(t, kgo.DefaultProduceTopic("c4"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
			kgo.ProducerLinger(time.Millisecond))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				v := fmt.Sprintf("p%d-%06d", p, i)
				cl.Produce(context.Background(), &kgo.Record{Value: []byte(v)}, func(_ *kgo.Record, err error) {
					if err == nil {
						mu.Lock()
						acked[v] = true
						mu.Unlock()
					}
				})
				if i%50 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			fctx, fcancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer fcancel()
			if err := cl.Flush(fctx); err != nil {
				t.Errorf("producer %d flush: %v", p, err)
			}
		}()
	}
	for i := range 4 {
		time.Sleep(300 * time.Millisecond)
		mem = brokerkit.CrashRestart(t, b, mem, i%2 == 1)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()

	mu.Lock()
	nAcked := len(acked)
	mu.Unlock()
	if nAcked == 0 {
		t.Fatal("nothing acknowledged")
	}
	// Read everything back.
	cl := b.Client(t, kgo.ConsumeTopics("c4"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]int{}
	last := map[string]int{} // producer/partition → last index
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	missing := func() int {
		n := 0
		for v := range acked {
			if seen[v] == 0 {
				n++
			}
		}
		return n
	}
	for missing() > 0 && rctx.Err() == nil {
		fs := cl.PollFetches(rctx)
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			seen[v]++
			if seen[v] > 1 {
				t.Errorf("duplicate %s", v)
			}
			prod, idx, _ := strings.Cut(v, "-")
			n, _ := strconv.Atoi(idx)
			key := fmt.Sprintf("%s/%d", prod, r.Partition)
			if prev, ok := last[key]; ok && n <= prev {
				t.Errorf("%s: %s after index %d (order broken)", key, v, prev)
			}
			last[key] = n
		})
	}
	if m := missing(); m > 0 {
		t.Fatalf("%d of %d acknowledged records lost", m, nAcked)
	}
	t.Logf("%d records acknowledged across 4 crashes, all present once, order kept", nAcked)
}
