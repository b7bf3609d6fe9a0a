package reliability

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit/txnkit"
)

// TestC7LateRequestsRequestByRequest replays the two KAFKA-17754 shapes one
// request at a time, on the wire, at both transaction versions, so that
// what decides each outcome is visible: a request of transaction N that
// arrives after the client finished N and began N+1 at the same producer
// epoch.
//
// Under transaction version 1 (AddPartitionsToTxn, Produce v11, EndTxn v4)
// the protocol carries nothing that tells transaction N from N+1, so the
// broker must accept the late request, as Kafka does: a late
// EndTxn(commit) commits N+1 half-written, and a late Produce joins N+1 with
// a value of the aborted N. These subtests assert that hole, so that they
// turn red if a change to version 1 breaks what Kafka does; a version 1
// client is protected only by re-initialising its producer after an
// unconfirmed EndTxn (franz-go does; C7's tv1 run).
//
// Under transaction version 2 (Produce v12, EndTxn v5) every EndTxn bumps
// the epoch, N+1 runs at the bumped one, and the same late requests are
// fenced: the outcome is what the client asked for.
func TestC7LateRequestsRequestByRequest(t *testing.T) {
	b := brokertest.Run(t, brokerOptions()...)
	seeds := []string{b.Addr()}
	txnkit.CreateTopics(t, seeds, 1, "late-endtxn-v1", "late-endtxn-v2", "late-produce-v1", "late-produce-v2")

	t.Run("late EndTxn, version 1: commits the next transaction early", func(t *testing.T) {
		p := newRawProducer(t, b.Addr(), "late-endtxn-v1", 1)
		topic := "late-endtxn-v1"
		// Transaction N: X, then EndTxn(commit). Its first copy is held
		// up in the network; the client retries and the retry commits.
		p.add(topic)
		p.produce(topic, "X", 0)
		late := p.endTxnRequest(true)
		p.endTxn(true, nil)
		// Transaction N+1: Y1; the client will abort it.
		p.add(topic)
		p.produce(topic, "Y1", 0)
		// The held EndTxn(commit) of N arrives: same id, same epoch, and
		// a transaction is open, so version 1 commits it.
		if code := p.send(late).(*kmsg.EndTxnResponse).ErrorCode; code != 0 {
			t.Fatalf("late EndTxn: %v; version 1 has nothing to refuse it with", kerr.ErrorForCode(code))
		}
		// The client's own abort of N+1 now finds nothing to abort.
		p.endTxn(false, kerr.InvalidTxnState)
		if got := readCommitted(t, seeds, topic, []string{"X", "Y1"}); !slices.Equal(got, []string{"X", "Y1"}) {
			t.Fatalf("read_committed sees %v; want X and the aborted Y1 (the hole)", got)
		}
	})

	t.Run("late EndTxn, version 2: fenced", func(t *testing.T) {
		p := newRawProducer(t, b.Addr(), "late-endtxn-v2", 2)
		topic := "late-endtxn-v2"
		p.produce(topic, "X", 0)
		late := p.endTxnRequest(true)
		p.endTxn(true, nil)
		p.produce(topic, "Y1", 0)
		code := p.send(late).(*kmsg.EndTxnResponse).ErrorCode
		if code != kerr.ProducerFenced.Code {
			t.Fatalf("late EndTxn: %v, want PRODUCER_FENCED", kerr.ErrorForCode(code))
		}
		p.endTxn(false, nil)
		if got := readCommitted(t, seeds, topic, []string{"X"}); !slices.Equal(got, []string{"X"}) {
			t.Fatalf("read_committed sees %v, want only X", got)
		}
	})

	t.Run("late Produce, version 1: joins the next transaction", func(t *testing.T) {
		p := newRawProducer(t, b.Addr(), "late-produce-v1", 1)
		topic := "late-produce-v1"
		// Transaction N: X1 is written; X2 is held up in the network, the
		// client times out and aborts N.
		p.add(topic)
		p.produce(topic, "X1", 0)
		late := p.produceRequest(topic, "X2")
		p.endTxn(false, nil)
		// Transaction N+1 is opened on the same partition; the held X2
		// arrives before anything else of N+1. Same epoch, the partition is
		// in the (new) transaction, and its sequence is the next one.
		p.add(topic)
		if code := produceCode(p.send(late)); code != 0 {
			t.Fatalf("late Produce: %v; version 1 has nothing to refuse it with", kerr.ErrorForCode(code))
		}
		p.produce(topic, "Y1", 0)
		p.endTxn(true, nil)
		if got := readCommitted(t, seeds, topic, []string{"X2", "Y1"}); !slices.Equal(got, []string{"X2", "Y1"}) {
			t.Fatalf("read_committed sees %v; want the aborted X2 committed with Y1 (the hole)", got)
		}
	})

	t.Run("late Produce, version 2: fenced", func(t *testing.T) {
		p := newRawProducer(t, b.Addr(), "late-produce-v2", 2)
		topic := "late-produce-v2"
		p.produce(topic, "X1", 0)
		late := p.produceRequest(topic, "X2")
		p.endTxn(false, nil)
		if code := produceCode(p.send(late)); code != kerr.InvalidProducerEpoch.Code {
			t.Fatalf("late Produce: %v, want INVALID_PRODUCER_EPOCH", kerr.ErrorForCode(code))
		}
		p.produce(topic, "Y1", 0)
		p.endTxn(true, nil)
		if got := readCommitted(t, seeds, topic, []string{"Y1"}); !slices.Equal(got, []string{"Y1"}) {
			t.Fatalf("read_committed sees %v, want only Y1", got)
		}
	})
}

// rawProducer is a transactional producer written request by request, so a
// test can hold any request back and deliver it later.
type rawProducer struct {
	t       *testing.T
	conn    net.Conn
	corr    int32
	txnID   string
	version int // transaction version: 1 or 2
	pid     int64
	epoch   int16
	seq     int32
}

func newRawProducer(t *testing.T, addr, txnID string, version int) *rawProducer {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &rawProducer{t: t, conn: c, txnID: txnID, version: version}
	req := kmsg.NewPtrInitProducerIDRequest()
	req.SetVersion(4)
	req.TransactionalID, req.TransactionTimeoutMillis = &txnID, 60000
	resp := p.send(req).(*kmsg.InitProducerIDResponse)
	if resp.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	p.pid, p.epoch = resp.ProducerID, resp.ProducerEpoch
	return p
}

// send writes req (at the version it carries) and reads its response.
func (p *rawProducer) send(req kmsg.Request) kmsg.Response {
	p.t.Helper()
	p.corr++
	p.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.conn.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("c7-raw")).AppendRequest(nil, req, p.corr)); err != nil {
		p.t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(p.conn, size[:]); err != nil {
		p.t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(p.conn, body); err != nil {
		p.t.Fatal(err)
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	body = body[4:] // correlation id
	if resp.IsFlexible() {
		body = body[1:] // the header's empty tag section
	}
	if err := resp.ReadFrom(body); err != nil {
		p.t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

// add is AddPartitionsToTxn v3 (transaction version 1 only).
func (p *rawProducer) add(topic string) {
	p.t.Helper()
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.SetVersion(3)
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = p.txnID, p.pid, p.epoch
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{0}
	req.Topics = append(req.Topics, rt)
	resp := p.send(req).(*kmsg.AddPartitionsToTxnResponse)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		p.t.Fatalf("AddPartitionsToTxn: %v", kerr.ErrorForCode(code))
	}
}

// produceRequest builds the Produce of one transactional value at the next
// sequence (v11 for version 1, v12 for version 2) without sending it.
func (p *rawProducer) produceRequest(topic, value string) *kmsg.ProduceRequest {
	r := kmsg.Record{Value: []byte(value)}
	r.Length = int32(len(r.AppendTo(nil)) - 1)
	batch := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, Attributes: 0x10, // transactional
		ProducerID: p.pid, ProducerEpoch: p.epoch, FirstSequence: p.seq,
		NumRecords: 1, Records: r.AppendTo(nil),
	}
	batch.Length = int32(len(batch.AppendTo(nil)) - 12)
	raw := batch.AppendTo(nil)
	logstore.FixCRC(raw)
	p.seq++
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(11)
	if p.version == 2 {
		req.SetVersion(12)
	}
	req.TransactionID, req.Acks, req.TimeoutMillis = &p.txnID, -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = raw
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func (p *rawProducer) produce(topic, value string, want int16) {
	p.t.Helper()
	if code := produceCode(p.send(p.produceRequest(topic, value))); code != want {
		p.t.Fatalf("Produce %s: %v, want %v", value, kerr.ErrorForCode(code), kerr.ErrorForCode(want))
	}
}

func produceCode(resp kmsg.Response) int16 {
	return resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
}

// endTxnRequest builds this transaction's EndTxn without sending it.
func (p *rawProducer) endTxnRequest(commit bool) *kmsg.EndTxnRequest {
	req := kmsg.NewPtrEndTxnRequest()
	req.SetVersion(4)
	if p.version == 2 {
		req.SetVersion(5)
	}
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = p.txnID, p.pid, p.epoch, commit
	return req
}

// endTxn ends the transaction and expects want (nil: success); under
// version 2 the producer goes on with the epoch the answer hands it, with
// sequences from 0.
func (p *rawProducer) endTxn(commit bool, want *kerr.Error) {
	p.t.Helper()
	resp := p.send(p.endTxnRequest(commit)).(*kmsg.EndTxnResponse)
	wantCode := int16(0)
	if want != nil {
		wantCode = want.Code
	}
	if resp.ErrorCode != wantCode {
		p.t.Fatalf("EndTxn(commit=%v): %v, want %v", commit, kerr.ErrorForCode(resp.ErrorCode), kerr.ErrorForCode(wantCode))
	}
	if p.version == 2 && resp.ErrorCode == 0 {
		if resp.ProducerEpoch != p.epoch+1 || resp.ProducerID != p.pid {
			p.t.Fatalf("EndTxn v5 handed over %d/%d, want %d/%d", resp.ProducerID, resp.ProducerEpoch, p.pid, p.epoch+1)
		}
		p.epoch, p.seq = resp.ProducerEpoch, 0
	}
}

// readCommitted returns the values a read_committed consumer sees in
// partition 0 of topic, in order: it reads until it has as many as want,
// then a second more, so that a value that should not be there is seen too.
func readCommitted(t *testing.T, seeds []string, topic string, want []string) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	poll := func(d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		fs := cl.PollFetches(ctx)
		fs.EachError(func(_ string, _ int32, err error) {
			if ctx.Err() == nil {
				t.Fatalf("reading %s: %v", topic, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		poll(time.Second)
	}
	poll(time.Second)
	return got
}
