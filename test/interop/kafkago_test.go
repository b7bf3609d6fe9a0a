package interop

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/testkit/brokerkit"
	"github.com/segmentio/kafka-go"
)

// kafka-go has two protocol paths: its Writer negotiates versions through
// ApiVersions v0, while its Reader and consumer groups use hard-coded old
// versions (JoinGroup v1, Fetch v10, OffsetCommit v2 …). It has no
// idempotent producer, so acks=all (RequireAll) is the strongest write.
func TestKafkaGoWriterAcksAllAndGroupReaderWithCommits(t *testing.T) {
	b := startBroker(t)
	const topic, group = "kafkago-orders", "kafkago-group"
	brokerkit.CreateTopic(t, b, topic, 3)
	first := brokerkit.Values("kafkago", 120)

	w := &kafka.Writer{
		Addr:         kafka.TCP(b.Addr()),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
	}
	defer w.Close()
	write := func(vs []string) {
		t.Helper()
		var msgs []kafka.Message
		for i, v := range vs {
			msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("k%d", i%9)), Value: []byte(v)})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("WriteMessages: %v", err)
		}
	}
	write(first)

	newReader := func() *kafka.Reader {
		return kafka.NewReader(kafka.ReaderConfig{
			Brokers:        []string{b.Addr()},
			GroupID:        group,
			Topic:          topic,
			StartOffset:    kafka.FirstOffset,
			CommitInterval: 0, // commit synchronously in CommitMessages
			MaxWait:        250 * time.Millisecond,
			// A closed reader's member lingers until its session times out
			// unless it leaves; keep the session short so the second reader
			// is not held up if the leave is lost.
			SessionTimeout:    6 * time.Second,
			HeartbeatInterval: time.Second,
			ReadLagInterval:   -1,
		})
	}
	readN := func(r *kafka.Reader, n int) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		var got []string
		for len(got) < n {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("FetchMessage after %d of %d: %v", len(got), n, err)
			}
			got = append(got, string(m.Value))
			if err := r.CommitMessages(ctx, m); err != nil {
				t.Fatalf("CommitMessages: %v", err)
			}
		}
		return got
	}

	r1 := newReader()
	brokerkit.SameSet(t, "first reader", readN(r1, len(first)), first)
	if err := r1.Close(); err != nil {
		t.Fatalf("close first reader: %v", err)
	}

	// A new member of the group resumes from the commits: it sees only what
	// was written after them.
	second := brokerkit.Values("kafkago-more", 30)
	write(second)
	r2 := newReader()
	defer r2.Close()
	brokerkit.SameSet(t, "second reader", readN(r2, len(second)), second)

	ends := brokerkit.EndOffsets(t, b, topic)
	got := brokerkit.Committed(t, b, group, topic)
	for p, end := range ends {
		if got[p] != end {
			t.Errorf("partition %d: committed %d, want the end offset %d", p, got[p], end)
		}
	}
}
