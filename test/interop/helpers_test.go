package interop

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// startBroker runs a broker for one test. Groups rebalance at once: the
// 3 s initial delay exists for fleets of consumers, not for tests.
func startBroker(t *testing.T, opts ...broker.Option) *brokertest.Broker {
	t.Helper()
	return brokertest.Run(t, append([]broker.Option{
		broker.WithProperty("group.initial.rebalance.delay.ms", "0"),
	}, opts...)...)
}

// readAll consumes topic from the start with franz-go until n records
// arrived, to check what another client wrote.
func readAll(t *testing.T, b *brokertest.Broker, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := testkit.Context(t, 30*time.Second)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s before timeout", len(out), n, topic)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

// oneIdempotentProducer fails unless every record was written by one
// idempotent producer: its batches carry a producer id and epoch, which a
// non-idempotent client leaves at -1. This is what tells us that the client
// really negotiated InitProducerId and sequence numbers with the broker.
func oneIdempotentProducer(t *testing.T, recs []*kgo.Record) {
	t.Helper()
	ids := map[int64]bool{}
	for _, r := range recs {
		if r.ProducerID < 0 || r.ProducerEpoch < 0 {
			t.Fatalf("record %q at %d/%d has producer id %d epoch %d: not written idempotently",
				r.Value, r.Partition, r.Offset, r.ProducerID, r.ProducerEpoch)
		}
		ids[r.ProducerID] = true
	}
	if len(ids) != 1 {
		t.Fatalf("records carry %d producer ids, want the one producer's", len(ids))
	}
}
