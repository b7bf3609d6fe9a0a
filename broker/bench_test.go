package broker_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// benchProduce produces b.N records of size bytes with acks=all through one
// idempotent kgo client (fsync on every acknowledgement, group commit).
func benchProduce(b *testing.B, size int) (*brokertest.Broker, string) {
	br := brokertest.Run(b, broker.WithProperty("num.partitions", "4"), broker.WithTopics("bench"))
	cl := br.Client(b, kgo.DefaultProduceTopic("bench"), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(100000),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	val := make([]byte, size)
	rand.Read(val) // incompressible, like most real payloads
	b.SetBytes(int64(size))
	b.ResetTimer()
	for range b.N {
		cl.Produce(context.Background(), &kgo.Record{Value: val}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	return br, "bench"
}

func BenchmarkProduce100B(b *testing.B) { benchProduce(b, 100) }
func BenchmarkProduce1KiB(b *testing.B) { benchProduce(b, 1024) }

func benchConsume(b *testing.B, size int) {
	br, topic := benchProduce(b, size)
	cl := br.Client(b, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	b.ResetTimer()
	b.StartTimer()
	n := 0
	for n < b.N {
		fs := cl.PollFetches(context.Background())
		n += fs.NumRecords()
	}
}

func BenchmarkConsume100B(b *testing.B) { benchConsume(b, 100) }
func BenchmarkConsume1KiB(b *testing.B) { benchConsume(b, 1024) }
