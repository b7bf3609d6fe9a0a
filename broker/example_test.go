package broker_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
)

// Embedding a durable broker in a program: every Kafka client can connect to
// b.Addr(). Records acknowledged with acks=all (franz-go's default) are
// fsynced.
func Example() {
	dir, err := os.MkdirTemp("", "idem-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	b, err := broker.New(
		broker.WithDataDir(dir),
		broker.WithKafkaAddr("127.0.0.1:0"), // a free port
		broker.WithAdminAddr(""),            // no /metrics endpoint
		broker.WithTopics("orders"),
		broker.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Start(); err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("orders"))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("order-1")}).FirstErr(); err != nil {
		log.Fatal(err)
	}
	fs := cl.PollFetches(ctx)
	fs.EachRecord(func(r *kgo.Record) { fmt.Printf("%s at offset %d\n", r.Value, r.Offset) })
	// Output: order-1 at offset 0
}
