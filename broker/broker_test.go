package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// consumeN reads n records of topic from the start.
func consumeN(t *testing.T, b *brokertest.Broker, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl := b.Client(t, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	ctx := ctxT(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), n, err)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func TestProduceConsumeAcks(t *testing.T) {
	b := brokertest.Run(t)
	for _, tc := range []struct {
		name string
		acks kgo.Acks
		opts []kgo.Opt
	}{
		{"all", kgo.AllISRAcks(), nil},
		{"leader", kgo.LeaderAck(), []kgo.Opt{kgo.DisableIdempotentWrite()}},
		{"none", kgo.NoAck(), []kgo.Opt{kgo.DisableIdempotentWrite()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "acks-" + tc.name
			adm := kadm.NewClient(b.Client(t))
			if _, err := adm.CreateTopic(ctxT(t), 3, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
			cl := b.Client(t, append([]kgo.Opt{kgo.RequiredAcks(tc.acks), kgo.DefaultProduceTopic(topic)}, tc.opts...)...)
			const n = 300
			for i := range n {
				cl.Produce(ctxT(t), &kgo.Record{Key: []byte(fmt.Sprint(i % 7)), Value: []byte(fmt.Sprint(i))}, func(_ *kgo.Record, err error) {
					if err != nil {
						t.Errorf("produce: %v", err)
					}
				})
			}
			if err := cl.Flush(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			recs := consumeN(t, b, topic, n)
			seen := map[string]bool{}
			for _, r := range recs {
				if seen[string(r.Value)] {
					t.Fatalf("duplicate %s", r.Value)
				}
				seen[string(r.Value)] = true
			}
			if len(seen) != n {
				t.Fatalf("got %d distinct records, want %d", len(seen), n)
			}
		})
	}
}

func TestAutoCreateAndNew(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("num.partitions", "4"))
	cl := b.Client(t, kgo.AllowAutoTopicCreation())
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "auto", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctxT(t), "auto")
	if err != nil {
		t.Fatal(err)
	}
	d := td["auto"]
	if d.Err != nil || len(d.Partitions) != 4 || d.ID == [16]byte{} {
		t.Fatalf("auto topic: %+v", d)
	}
	if _, err := broker.New(broker.WithProperty("num.partitions", "zero")); err == nil {
		t.Fatal("bad property accepted")
	}
	if _, err := broker.New(broker.WithProperty("no.such.thing", "1")); err == nil {
		t.Fatal("unknown property accepted")
	}
}

func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	b := brokertest.Run(t, broker.WithDataDir(dir))
	second, err := broker.New(broker.WithDataDir(dir), broker.WithKafkaAddr("127.0.0.1:0"), broker.WithAdminAddr(""))
	if err != nil {
		t.Fatal(err)
	}
	err = second.Start()
	if err == nil || !strings.Contains(err.Error(), "in use by another idem broker") {
		t.Fatalf("second broker on the same directory: %v", err)
	}
	second.Close()
	b.Restart(t) // the lock is released on Close
}
