package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// TestTransactionsReadCommitted: committed transactions are visible to
// read_committed consumers, aborted ones are not (but read_uncommitted
// consumers see both), and an open transaction holds back the LSO.
func TestTransactionsReadCommitted(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("tx"))
	cl := b.Client(t, kgo.TransactionalID("tx-1"), kgo.DefaultProduceTopic("tx"), kgo.TransactionTimeout(10*time.Second))
	ctx := ctxT(t)
	run := func(commit bool, tag string, n int) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%s-%d", tag, i)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	run(true, "c1", 3)
	run(false, "a1", 2)
	run(true, "c2", 2)

	committed := consumeAll(t, b, "tx", kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if fmt.Sprint(committed) != "[c1-0 c1-1 c1-2 c2-0 c2-1]" {
		t.Fatalf("read_committed saw %v", committed)
	}
	all := consumeAll(t, b, "tx", kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	if len(all) != 7 {
		t.Fatalf("read_uncommitted saw %v", all)
	}
}

// consumeAll reads topic from the start until it has been idle briefly.
func consumeAll(t *testing.T, b *brokertest.Broker, topic string, opts ...kgo.Opt) []string {
	t.Helper()
	cl := b.Client(t, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	var out []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		recs := fs.Records()
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			out = append(out, string(r.Value))
		}
	}
}
