package txn

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// saramaConfig is the configuration sarama requires of a transactional
// producer (idempotent, acks=all, one request in flight) at the protocol
// version idem is tested with: sarama picks each request version from
// config.Version, and V2_8_0_0 gives the KIP-588 versions (InitProducerId
// v4, AddPartitionsToTxn/AddOffsetsToTxn v2, EndTxn v2, TxnOffsetCommit v3)
// and Fetch v12 for read_committed consumers.
func saramaConfig(transactionalID string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.ClientID = "idem-interop-sarama-txn"
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Transaction.ID = transactionalID
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	cfg.Consumer.MaxWaitTime = 200 * time.Millisecond
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	return cfg
}

func newSaramaTxnProducer(t *testing.T, b *brokertest.Broker, transactionalID string) sarama.SyncProducer {
	t.Helper()
	p, err := sarama.NewSyncProducer([]string{b.Addr()}, saramaConfig(transactionalID))
	if err != nil {
		t.Fatalf("sarama transactional producer %s (InitProducerId): %v", transactionalID, err)
	}
	if !p.IsTransactional() {
		t.Fatalf("sarama producer %s is not transactional", transactionalID)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// saramaTxn runs one transaction that sends vals to topic, spreading them
// over partitions in turn, then commits or aborts it.
func saramaTxn(t *testing.T, p sarama.SyncProducer, topic string, partitions int32, vals []string, commit bool) {
	t.Helper()
	if err := p.BeginTxn(); err != nil {
		t.Fatalf("BeginTxn: %v", err)
	}
	var msgs []*sarama.ProducerMessage
	for i, v := range vals {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: int32(i) % partitions, Value: sarama.StringEncoder(v)})
	}
	// AddPartitionsToTxn, then Produce of transactional batches.
	if err := p.SendMessages(msgs); err != nil {
		t.Fatalf("SendMessages in a transaction: %v (txn status %v)", err, p.TxnStatus())
	}
	endTxn(t, p, commit)
}

func endTxn(t *testing.T, p sarama.SyncProducer, commit bool) {
	t.Helper()
	if commit {
		if err := p.CommitTxn(); err != nil {
			t.Fatalf("CommitTxn (EndTxn commit): %v (txn status %v)", err, p.TxnStatus())
		}
	} else if err := p.AbortTxn(); err != nil {
		t.Fatalf("AbortTxn (EndTxn abort): %v (txn status %v)", err, p.TxnStatus())
	}
	if st := p.TxnStatus(); st&sarama.ProducerTxnFlagReady == 0 {
		t.Fatalf("after EndTxn the producer is %v, want ready for the next transaction", st)
	}
}

// A sarama transactional producer commits one transaction, aborts the next
// and commits a third; a sarama read_committed consumer group reads exactly
// the two committed ones. The aborted records are in the log (a
// read_uncommitted franz-go consumer sees them), so it is the read_committed
// filtering (LSO, AbortedTransactions, the abort markers) that hides them,
// before and after a broker restart.
func TestSaramaTransactionsReadCommittedByConsumerGroup(t *testing.T) {
	b := brokertest.Run(t)
	const topic, partitions = "sarama-txn", 3
	brokerkit.CreateTopic(t, b, topic, partitions)

	first, aborted, second := brokerkit.Values("sarama-commit-a", 30), brokerkit.Values("sarama-abort", 30), brokerkit.Values("sarama-commit-b", 30)
	p := newSaramaTxnProducer(t, b, "sarama-txn-producer")
	saramaTxn(t, p, topic, partitions, first, true)
	saramaTxn(t, p, topic, partitions, aborted, false)
	saramaTxn(t, p, topic, partitions, second, true)
	committedVals := append(slices.Clone(first), second...)

	// The log holds all three transactions, written by one transactional
	// producer; the read_committed view holds the committed two.
	all := readUncommitted(t, b, topic, len(committedVals)+len(aborted))
	brokerkit.SameSet(t, "franz-go read_uncommitted of what sarama wrote", valuesOf(all), append(slices.Clone(committedVals), aborted...))
	oneTransactionalProducer(t, "what sarama wrote", all)
	brokerkit.SameSet(t, "franz-go read_committed of what sarama wrote", valuesOf(readCommitted(t, b, topic, len(committedVals))), committedVals)

	// A sarama consumer group with IsolationLevel ReadCommitted. Each
	// partition ends with a committed transaction, so once it has
	// len(committedVals) records it has gone past every aborted one.
	got := saramaGroupConsume(t, b, "sarama-txn-readers", topic, len(committedVals))
	noneOf(t, "sarama read_committed group", got, "sarama-abort")
	brokerkit.SameSet(t, "sarama read_committed group", got, committedVals)

	// After a restart the broker serves the same view from what it
	// rebuilt (the aborted-transaction index and the markers in the log).
	b.Restart(t)
	got = saramaGroupConsume(t, b, "sarama-txn-readers-after-restart", topic, len(committedVals))
	noneOf(t, "sarama read_committed group after a broker restart", got, "sarama-abort")
	brokerkit.SameSet(t, "sarama read_committed group after a broker restart", got, committedVals)
}

// A sarama copier consumes "in" and, in transactions, writes copies to
// "out" and commits its consumed offsets with AddMessageToTxn (first
// transaction) and AddOffsetsToTxn (the others). An aborted transaction's
// offsets never become the group's; after the copier rewinds and commits
// the same range again, a new member of the group starts exactly after the
// copied records.
//
// sarama keeps the offsets of a transaction in memory and sends them
// (AddOffsetsToTxn, then TxnOffsetCommit v3) from CommitTxn, just before
// EndTxn; AbortTxn sends none. Pending offsets dropped by an abort marker
// are therefore exercised by the librdkafka and kafkajs tests, which send
// them at once.
func TestSaramaTransactionalOffsetsCommitWithTheTransaction(t *testing.T) {
	b := brokertest.Run(t)
	const in, out, group = "sarama-in", "sarama-out", "sarama-copier"
	brokerkit.CreateTopic(t, b, in, 2)
	brokerkit.CreateTopic(t, b, out, 2)
	input := map[int32][]string{0: brokerkit.Values("in-p0", 30), 1: brokerkit.Values("in-p1", 30)}
	for p, vs := range input {
		seed(t, b, in, p, vs)
	}

	consumer, err := sarama.NewConsumer([]string{b.Addr()}, saramaConfig(""))
	if err != nil {
		t.Fatalf("sarama consumer: %v", err)
	}
	defer consumer.Close()
	// The first 20 messages of each input partition.
	msgs := map[int32][]*sarama.ConsumerMessage{}
	for p := range input {
		pc, err := consumer.ConsumePartition(in, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", in, p, err)
		}
		timeout := time.After(15 * time.Second)
		for len(msgs[p]) < 20 {
			select {
			case m := <-pc.Messages():
				msgs[p] = append(msgs[p], m)
			case <-timeout:
				t.Fatalf("sarama consumed %d messages of %s/%d before timeout", len(msgs[p]), in, p)
			}
		}
		pc.AsyncClose()
	}

	p := newSaramaTxnProducer(t, b, "sarama-copier-txn")
	copyRange := func(from, to int) {
		t.Helper()
		if err := p.BeginTxn(); err != nil {
			t.Fatalf("BeginTxn: %v", err)
		}
		for part, ms := range msgs {
			for _, m := range ms[from:to] {
				if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: out, Partition: part, Value: sarama.ByteEncoder(m.Value)}); err != nil {
					t.Fatalf("copy %s: %v", m.Value, err)
				}
			}
		}
	}
	want := func(what string, offsets map[int32]int64) {
		t.Helper()
		if got := brokerkit.Committed(t, b, group, in); !maps.Equal(got, offsets) {
			t.Fatalf("%s: group %s has committed %v, want %v", what, group, got, offsets)
		}
	}

	// 1: copy [0,10) and commit each consumed message with AddMessageToTxn
	// (AddOffsetsToTxn + TxnOffsetCommit of its offset+1).
	copyRange(0, 10)
	for _, ms := range msgs {
		for _, m := range ms[:10] {
			if err := p.AddMessageToTxn(m, group, nil); err != nil {
				t.Fatalf("AddMessageToTxn %s/%d@%d: %v", m.Topic, m.Partition, m.Offset, err)
			}
		}
	}
	endTxn(t, p, true)
	want("after the first transaction committed", map[int32]int64{0: 10, 1: 10})

	// 2: copy [10,20), add offsets 20, abort: the offsets are dropped
	// (by sarama, which never sends them).
	offsets20 := map[string][]*sarama.PartitionOffsetMetadata{in: {{Partition: 0, Offset: 20}, {Partition: 1, Offset: 20}}}
	copyRange(10, 20)
	if err := p.AddOffsetsToTxn(offsets20, group); err != nil {
		t.Fatalf("AddOffsetsToTxn: %v", err)
	}
	endTxn(t, p, false)
	want("after the second transaction aborted", map[int32]int64{0: 10, 1: 10})

	// 3: the copier rewinds and copies [10,20) again, committing.
	copyRange(10, 20)
	if err := p.AddOffsetsToTxn(offsets20, group); err != nil {
		t.Fatalf("AddOffsetsToTxn: %v", err)
	}
	endTxn(t, p, true)
	want("after the third transaction committed", map[int32]int64{0: 20, 1: 20})

	// out holds each copied value once, per partition in input order.
	copies := readCommitted(t, b, out, 40)
	oneTransactionalProducer(t, "sarama copies", copies)
	for part, vs := range byPartition(copies) {
		if !slices.Equal(vs, input[part][:20]) {
			t.Fatalf("out/%d read_committed holds %v, want the first 20 values of in/%d: %v", part, vs, part, input[part][:20])
		}
	}

	// A new member of the group starts from the transactional commits:
	// exactly the 10 values per partition the copier did not copy. Its
	// reset policy is "oldest", so it would re-read from 0 without them.
	var rest []string
	for _, vs := range input {
		rest = append(rest, vs[20:]...)
	}
	brokerkit.SameSet(t, "new sarama member of "+group, saramaGroupConsume(t, b, group, in, len(rest)), rest)
}

// saramaGroupConsume joins group with a sarama consumer group
// (read_committed), consumes topic until n messages arrived, marks them and
// leaves, and returns their values.
func saramaGroupConsume(t *testing.T, b *brokertest.Broker, group, topic string, n int) []string {
	t.Helper()
	cg, err := sarama.NewConsumerGroup([]string{b.Addr()}, group, saramaConfig(""))
	if err != nil {
		t.Fatalf("sarama consumer group %s: %v", group, err)
	}
	h := &saramaHandler{want: n, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	if err := cg.Close(); err != nil {
		t.Errorf("close sarama consumer group %s: %v", group, err)
	}
	if consumeErr != nil {
		t.Fatalf("sarama Consume: %v", consumeErr)
	}
	got := h.values()
	if len(got) < n {
		t.Fatalf("sarama group %s consumed %d of %d messages of %s before timeout: %v", group, len(got), n, topic, got)
	}
	return got
}

type saramaHandler struct {
	want int
	done chan struct{}

	mu  sync.Mutex
	got []string
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
	return slices.Clone(h.got)
}

// A second sarama producer with the same transactional id fences the first
// (InitProducerId bumps the epoch and aborts the first one's open
// transaction): the zombie's CommitTxn fails with PRODUCER_FENCED (EndTxn
// v2, KIP-588), its producer is left in a fatal state, and its record is
// never visible to read_committed consumers.
func TestSaramaZombieProducerIsFenced(t *testing.T) {
	b := brokertest.Run(t)
	const topic, id = "sarama-fence", "sarama-fenced-txn"
	brokerkit.CreateTopic(t, b, topic, 2)

	zombie := newSaramaTxnProducer(t, b, id)
	if err := zombie.BeginTxn(); err != nil {
		t.Fatalf("BeginTxn: %v", err)
	}
	if _, _, err := zombie.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder("sarama-zombie")}); err != nil {
		t.Fatalf("zombie SendMessage: %v", err)
	}

	successor := newSaramaTxnProducer(t, b, id)
	err := zombie.CommitTxn()
	if !errors.Is(err, sarama.ErrProducerFenced) {
		t.Fatalf("the zombie's CommitTxn after a new producer took its transactional id: %v (status %v), want %v", err, zombie.TxnStatus(), sarama.ErrProducerFenced)
	}
	if st := zombie.TxnStatus(); st&sarama.ProducerTxnFlagFatalError == 0 {
		t.Fatalf("the fenced zombie is %v, want a fatal error state", st)
	}
	if err := zombie.BeginTxn(); err == nil {
		t.Fatal("the fenced zombie began another transaction")
	}

	after := brokerkit.Values("sarama-after-fence", 4)
	saramaTxn(t, successor, topic, 2, after, true)
	recs := readCommitted(t, b, topic, len(after))
	noneOf(t, "franz-go read_committed after fencing", valuesOf(recs), "sarama-zombie")
	brokerkit.SameSet(t, "franz-go read_committed after fencing", valuesOf(recs), after)
	brokerkit.SameSet(t, "franz-go read_uncommitted after fencing", valuesOf(readUncommitted(t, b, topic, len(after)+1)), append(slices.Clone(after), "sarama-zombie"))
}

// A sarama consumer-group copier commits each input offset in the
// transaction that writes its copy, with the session's group metadata
// (AddMessageToTxnWithGroupMetadata: TxnOffsetCommit v3 with generation
// and member id, KIP-447). The group coordinator checks them: a wrong
// generation while the member is alive gets ILLEGAL_GENERATION, and the
// member's id after it left the group gets UNKNOWN_MEMBER_ID; both leave
// the transaction abortable and commit nothing.
func TestSaramaGroupCopierCommitsOffsetsWithGroupMetadata(t *testing.T) {
	b := brokertest.Run(t)
	const in, out, group = "sarama-kip447-in", "sarama-kip447-out", "sarama-kip447"
	brokerkit.CreateTopic(t, b, in, 1)
	brokerkit.CreateTopic(t, b, out, 1)
	input := brokerkit.Values("kip447", 20)
	seed(t, b, in, 0, input)

	p := newSaramaTxnProducer(t, b, "sarama-kip447-txn")
	h := &saramaCopier{t: t, p: p, out: out, n: len(input), done: make(chan struct{})}
	cg, err := sarama.NewConsumerGroup([]string{b.Addr()}, group, saramaConfig(""))
	if err != nil {
		t.Fatalf("sarama consumer group: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	consumed := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{in}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				consumed <- err
				return
			}
		}
		consumed <- nil
	}()
	select {
	case <-h.done:
	case <-ctx.Done():
		t.Fatalf("the sarama copier copied %d of %d records before timeout", h.copied.Load(), len(input))
	}
	cancel()
	if err := <-consumed; err != nil {
		t.Fatalf("sarama Consume: %v", err)
	}
	if err := cg.Close(); err != nil {
		t.Fatalf("close consumer group: %v", err)
	}
	if h.err != nil {
		t.Fatal(h.err)
	}
	if !errors.Is(h.wrongGeneration, sarama.ErrIllegalGeneration) {
		t.Fatalf("TxnOffsetCommit with the live member's id and generation %d+1: %v, want %v", h.meta.GenerationID, h.wrongGeneration, sarama.ErrIllegalGeneration)
	}

	// The member has left: its id no longer belongs to the group.
	if err := p.BeginTxn(); err != nil {
		t.Fatalf("BeginTxn: %v", err)
	}
	if err := p.AddOffsetsToTxnWithGroupMetadata(map[string][]*sarama.PartitionOffsetMetadata{in: {{Partition: 0, Offset: 1}}}, h.meta); err != nil {
		t.Fatalf("AddOffsetsToTxnWithGroupMetadata: %v", err)
	}
	if err := p.CommitTxn(); !errors.Is(err, sarama.ErrUnknownMemberId) {
		t.Fatalf("CommitTxn with a TxnOffsetCommit as member %q after it left the group: %v, want %v", h.meta.MemberID, err, sarama.ErrUnknownMemberId)
	}
	endTxn(t, p, false)

	if got := brokerkit.Committed(t, b, group, in); !maps.Equal(got, map[int32]int64{0: int64(len(input))}) {
		t.Fatalf("group %s committed %v, want {0: %d}", group, got, len(input))
	}
	copies := readCommitted(t, b, out, len(input))
	oneTransactionalProducer(t, "sarama group copier", copies)
	if got := valuesOf(copies); !slices.Equal(got, input) {
		t.Fatalf("read_committed of %s: %v, want %v", out, got, input)
	}
}

// saramaCopier copies each message in its own transaction, committing its
// offset with the session's group metadata. After the last one it tries a
// transactional offset commit with the next generation and aborts it.
// ConsumeClaim runs for the one partition of the input, so the producer is
// used by one goroutine at a time.
type saramaCopier struct {
	t    *testing.T
	p    sarama.SyncProducer
	out  string
	n    int
	done chan struct{}
	once sync.Once

	// Set by ConsumeClaim, read after the group is closed.
	copied          atomic.Int32
	meta            *sarama.ConsumerGroupMetadata
	wrongGeneration error
	err             error
}

func (c *saramaCopier) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (c *saramaCopier) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (c *saramaCopier) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	c.meta = &sarama.ConsumerGroupMetadata{GroupID: "sarama-kip447", GenerationID: s.GenerationID(), MemberID: s.MemberID()}
	fail := func(format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		c.once.Do(func() { c.err = err; close(c.done) })
		return err
	}
	for {
		var m *sarama.ConsumerMessage
		select {
		case m = <-claim.Messages():
		case <-s.Context().Done():
			return nil
		}
		if m == nil {
			return nil
		}
		if err := c.p.BeginTxn(); err != nil {
			return fail("BeginTxn: %v", err)
		}
		if _, _, err := c.p.SendMessage(&sarama.ProducerMessage{Topic: c.out, Value: sarama.ByteEncoder(m.Value)}); err != nil {
			return fail("copy %s: %v", m.Value, err)
		}
		if err := c.p.AddMessageToTxnWithGroupMetadata(m, c.meta, nil); err != nil {
			return fail("AddMessageToTxnWithGroupMetadata %s/%d@%d as %+v: %v", m.Topic, m.Partition, m.Offset, *c.meta, err)
		}
		if err := c.p.CommitTxn(); err != nil {
			return fail("CommitTxn: %v", err)
		}
		if int(c.copied.Add(1)) < c.n {
			continue
		}
		if err := c.p.BeginTxn(); err != nil {
			return fail("BeginTxn: %v", err)
		}
		next := *c.meta
		next.GenerationID++
		if err := c.p.AddMessageToTxnWithGroupMetadata(m, &next, nil); err != nil {
			return fail("AddMessageToTxnWithGroupMetadata: %v", err)
		}
		// sarama sends the offsets (AddOffsetsToTxn, TxnOffsetCommit) in
		// CommitTxn, which therefore fails; the transaction is abortable.
		c.wrongGeneration = c.p.CommitTxn()
		if err := c.p.AbortTxn(); err != nil {
			return fail("AbortTxn after the wrong generation: %v", err)
		}
		c.once.Do(func() { close(c.done) })
		return nil
	}
}
