package interop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// sarama picks each request version from config.Version (V2_8_0_0 is its
// default since v1.60.1) rather than from ApiVersions alone, and is
// idempotent only when asked, with one request in flight.
func saramaConfig(v sarama.KafkaVersion) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = v
	cfg.ClientID = "idem-interop-sarama"
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 10
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	cfg.Consumer.MaxWaitTime = 250 * time.Millisecond
	return cfg
}

func TestSaramaIdempotentSyncProducerAndConsumerGroup(t *testing.T) {
	// V2_8_0_0 is sarama's default; V4_0_0_0 makes it send the flexible
	// (compact) versions that Kafka 4 clients use.
	for _, v := range []sarama.KafkaVersion{sarama.V2_8_0_0, sarama.V4_0_0_0} {
		t.Run(v.String(), func(t *testing.T) { testSarama(t, v) })
	}
}

func testSarama(t *testing.T, v sarama.KafkaVersion) {
	b := startBroker(t)
	const topic, group = "sarama-orders", "sarama-group"
	brokerkit.CreateTopic(t, b, topic, 3)
	all := brokerkit.Values("sarama", 150)

	producer, err := sarama.NewSyncProducer([]string{b.Addr()}, saramaConfig(v))
	if err != nil {
		t.Fatalf("sync producer: %v", err)
	}
	var msgs []*sarama.ProducerMessage
	for i, v := range all {
		msgs = append(msgs, &sarama.ProducerMessage{
			Topic:   topic,
			Key:     sarama.StringEncoder(fmt.Sprintf("key-%d", i%5)),
			Value:   sarama.StringEncoder(v),
			Headers: []sarama.RecordHeader{{Key: []byte("source"), Value: []byte("sarama")}},
		})
	}
	// Half in one SendMessages call (batched per partition), half one by one.
	if err := producer.SendMessages(msgs[:len(msgs)/2]); err != nil {
		t.Fatalf("SendMessages: %v", err)
	}
	for _, m := range msgs[len(msgs)/2:] {
		if _, _, err := producer.SendMessage(m); err != nil {
			t.Fatalf("SendMessage %s: %v", m.Value, err)
		}
	}
	for _, m := range msgs {
		if m.Offset < 0 {
			t.Fatalf("%s acknowledged without an offset", m.Value)
		}
	}
	if err := producer.Close(); err != nil {
		t.Fatalf("close producer: %v", err)
	}
	oneIdempotentProducer(t, readAll(t, b, topic, len(all)))

	// Consume them back through a sarama consumer group, marking each one.
	cg, err := sarama.NewConsumerGroup([]string{b.Addr()}, group, saramaConfig(v))
	if err != nil {
		t.Fatalf("consumer group: %v", err)
	}
	h := &saramaHandler{want: len(all), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var consumeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				consumeErr = err
				return
			}
		}
	}()
	select {
	case <-h.done:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	// Close commits the marked offsets for the last time.
	if err := cg.Close(); err != nil {
		t.Errorf("close consumer group: %v", err)
	}
	if consumeErr != nil {
		t.Fatalf("Consume: %v", consumeErr)
	}
	brokerkit.SameSet(t, "values consumed by the sarama group", h.values(), all)
	for _, hd := range h.headers() {
		if hd != "source=sarama" {
			t.Fatalf("header read back as %q", hd)
		}
	}

	ends := brokerkit.EndOffsets(t, b, topic)
	got := brokerkit.Committed(t, b, group, topic)
	for p, end := range ends {
		if got[p] != end {
			t.Errorf("partition %d: committed %d, want the end offset %d (all %v)", p, got[p], end, got)
		}
	}
}

type saramaHandler struct {
	want int
	done chan struct{}

	mu   sync.Mutex
	got  []string
	hdrs []string
}

func (h *saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *saramaHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			h.mu.Lock()
			h.got = append(h.got, string(m.Value))
			for _, hd := range m.Headers {
				h.hdrs = append(h.hdrs, string(hd.Key)+"="+string(hd.Value))
			}
			if len(h.got) == h.want {
				close(h.done)
			}
			h.mu.Unlock()
			s.MarkMessage(m, "")
		case <-s.Context().Done():
			return nil
		}
	}
}

func (h *saramaHandler) values() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

func (h *saramaHandler) headers() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.hdrs...)
}
