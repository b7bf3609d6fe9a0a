package verify

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit"
)

// echoBroker speaks only Kafka framing: it answers every request frame with
// a frame holding the request's correlation id, and remembers what it got.
type echoBroker struct {
	ln net.Listener
	wg sync.WaitGroup

	mu   sync.Mutex
	got  []int32 // correlation ids received
	when []time.Time
}

func newEchoBroker(t *testing.T) *echoBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoBroker{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					f, err := readFrame(r)
					if err != nil {
						return
					}
					corr := int32(binary.BigEndian.Uint32(f[8:]))
					e.mu.Lock()
					e.got = append(e.got, corr)
					e.when = append(e.when, time.Now())
					e.mu.Unlock()
					resp := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 4), uint32(corr))
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

func (e *echoBroker) received() []int32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int32(nil), e.got...)
}

func newTestProxy(t *testing.T, upstream string) *Proxy {
	t.Helper()
	p, err := NewProxy(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// request writes a minimal request frame (key, version 0, corr, null client id).
func request(t *testing.T, c net.Conn, key int16, corr int32) {
	t.Helper()
	b := []byte{0, 0, 0, 10}
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 0xffff)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// response reads one response frame and returns its correlation id.
func response(c net.Conn, within time.Duration) (int32, error) {
	_ = c.SetReadDeadline(time.Now().Add(within))
	f, err := readFrame(c)
	if err != nil {
		return 0, err
	}
	return int32(binary.BigEndian.Uint32(f[4:])), nil
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProxyForwardsPipelinedRequestsAndResponsesInOrder(t *testing.T) {
	e := newEchoBroker(t)
	p := newTestProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr())
	for i := range int32(5) {
		request(t, c, 3, 100+i)
	}
	for i := range int32(5) {
		corr, err := response(c, 2*time.Second)
		if err != nil || corr != 100+i {
			t.Fatalf("response %d: correlation %d, %v", i, corr, err)
		}
	}
}

func TestProxyDropResponseLetsTheRequestTakeEffectButTheClientNeverHears(t *testing.T) {
	e := newEchoBroker(t)
	p := newTestProxy(t, e.ln.Addr().String())
	p.Add(Rule{Kind: FaultDropResponse, APIKey: APIProduce, Count: 1})
	c := dial(t, p.Addr())
	request(t, c, APIFetch, 1) // not selected: answered
	if corr, err := response(c, 2*time.Second); err != nil || corr != 1 {
		t.Fatalf("fetch: %d, %v", corr, err)
	}
	request(t, c, APIProduce, 2)
	if corr, err := response(c, 2*time.Second); err == nil {
		t.Fatalf("got the dropped response %d", corr)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection left hanging instead of reset: %v", err)
	}
	testkit.Eventually(t, 5*time.Second, "the broker to receive the produce", func() bool { return len(e.received()) == 2 })
	if p.Armed() != 0 || p.Applied()[FaultDropResponse] != 1 {
		t.Fatalf("armed %d applied %v", p.Armed(), p.Applied())
	}
	c2 := dial(t, p.Addr()) // the rule was used up: a retry gets through
	request(t, c2, APIProduce, 3)
	if corr, err := response(c2, 2*time.Second); err != nil || corr != 3 {
		t.Fatalf("retry: %d, %v", corr, err)
	}
}

func TestProxyDelayResponseHoldsTheAnswerAndEverythingBehindIt(t *testing.T) {
	e := newEchoBroker(t)
	p := newTestProxy(t, e.ln.Addr().String())
	p.Add(Rule{Kind: FaultDelayResponse, APIKey: APIProduce, Delay: 300 * time.Millisecond, Count: 1})
	c := dial(t, p.Addr())
	start := time.Now()
	request(t, c, APIProduce, 1)
	request(t, c, APIFetch, 2)
	for _, want := range []int32{1, 2} {
		corr, err := response(c, 2*time.Second)
		if err != nil || corr != want {
			t.Fatalf("want %d, got %d, %v", want, corr, err)
		}
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("answers after %v, want ≥ 300ms", d)
	}
}

func TestProxyResetNeverForwardsTheRequest(t *testing.T) {
	e := newEchoBroker(t)
	p := newTestProxy(t, e.ln.Addr().String())
	p.Add(Rule{Kind: FaultReset, APIKey: APIAnyKey, Count: 1})
	c := dial(t, p.Addr())
	request(t, c, APIProduce, 1)
	if _, err := response(c, 2*time.Second); err == nil {
		t.Fatal("answered")
	}
	time.Sleep(50 * time.Millisecond)
	if got := e.received(); len(got) != 0 {
		t.Fatalf("broker received %v", got)
	}
}

func TestProxyHoldDeliversTheRequestLateEvenAfterTheClientLeft(t *testing.T) {
	e := newEchoBroker(t)
	p := newTestProxy(t, e.ln.Addr().String())
	p.Add(Rule{Kind: FaultHold, APIKey: 26, Delay: 300 * time.Millisecond, Count: 1})
	c := dial(t, p.Addr())
	sent := time.Now()
	request(t, c, 26, 7)
	c.Close() // the client gave up
	testkit.Eventually(t, 5*time.Second, "the held request", func() bool { return len(e.received()) == 1 })
	e.mu.Lock()
	late := e.when[0].Sub(sent)
	e.mu.Unlock()
	if late < 300*time.Millisecond {
		t.Fatalf("delivered after %v, want ≥ 300ms", late)
	}
}

func TestProxyLatencyDelaysEveryRequestUntilCleared(t *testing.T) {
	e := newEchoBroker(t)
	p := newTestProxy(t, e.ln.Addr().String())
	p.SetLatency(200 * time.Millisecond)
	c := dial(t, p.Addr())
	start := time.Now()
	request(t, c, 3, 1)
	if _, err := response(c, 2*time.Second); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("answered after %v, %v", time.Since(start), err)
	}
	p.Clear()
	start = time.Now()
	request(t, c, 3, 2)
	if _, err := response(c, 2*time.Second); err != nil || time.Since(start) > 150*time.Millisecond {
		t.Fatalf("after Clear answered after %v, %v", time.Since(start), err)
	}
}

func TestStripProducerMakesAValidAnonymousBatch(t *testing.T) {
	record := kmsg.Record{Value: []byte("v")}
	batch := kmsg.RecordBatch{
		Magic: 2, Attributes: 0x10, LastOffsetDelta: 0, ProducerID: 42, ProducerEpoch: 3, FirstSequence: 9,
		NumRecords: 1, Records: record.AppendTo(nil),
	}
	b := batch.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	logstore.FixCRC(b)
	txid := "t"
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.TransactionID, req.Acks, req.TimeoutMillis = &txid, -1, 1000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "x", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: b}}}}
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("cli")).AppendRequest(nil, req, 5)
	if got := produceAcks(frame); got != -1 {
		t.Fatalf("acks read as %d", got)
	}
	out, err := stripProducer(frame)
	if err != nil {
		t.Fatal(err)
	}
	back := kmsg.NewPtrProduceRequest()
	back.SetVersion(9)
	pos, err := headerEnd(out[4:], true)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.ReadFrom(out[4+pos:]); err != nil {
		t.Fatal(err)
	}
	h, err := logstore.ParseBatch(back.Topics[0].Partitions[0].Records)
	if err != nil {
		t.Fatalf("rewritten batch does not validate: %v", err)
	}
	if h.ProducerID != -1 || h.ProducerEpoch != -1 || h.BaseSequence != -1 || h.IsTransactional() || back.TransactionID != nil {
		t.Fatalf("still identified: %+v txid %v", h, back.TransactionID)
	}
}

// sendAll produces n values through addr with an idempotent acks=all
// producer, recording the history, then drains the topic into it.
func sendAll(t *testing.T, addr, topic string, proc, n int, rec *Recorder, opts ...kgo.Opt) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		v := Value(proc, i)
		rec.Invoke(proc, FSend, Record{Value: v, Partition: -1, Offset: -1})
		r, err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).First()
		if err != nil {
			rec.Complete(proc, SendOutcome(err), FSend, Record{Value: v, Partition: -1, Offset: -1}, err)
			continue
		}
		rec.Complete(proc, OK, FSend, Record{Value: v, Partition: r.Partition, Offset: r.Offset}, nil)
	}
}

func drainInto(t *testing.T, addr, topic string, rec *Recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec.Invoke(99, FPoll, nil)
	rs, err := Drain(ctx, []string{addr}, topic)
	if err != nil {
		t.Fatal(err)
	}
	rec.Complete(99, OK, FPoll, rs, nil)
}

// Lost acknowledgements against the real broker: the idempotent producer
// retries each one and the broker recognises the retry, so the log checker
// finds nothing. Then the proxy's broken-broker hook replays acknowledged
// produces without their producer identity, and the same checker must
// report the duplicates: a checker that cannot fail proves nothing.
func TestProxyLostAcksAreHarmlessForAnIdempotentProducerButABrokenBrokerIsCaught(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("healthy", "broken"))
	p := newTestProxy(t, b.Addr())
	// Route every broker address the client learns through the proxy.
	dialer := kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, p.Addr())
	})

	rec := NewRecorder()
	for i := range 3 {
		p.Add(Rule{Kind: FaultDropResponse, APIKey: APIProduce, Count: 1})
		sendAll(t, b.Addr(), "healthy", i, 5+i, rec, dialer)
	}
	drainInto(t, b.Addr(), "healthy", rec)
	if p.Applied()[FaultDropResponse] != 3 {
		t.Fatalf("faults applied: %v", p.Applied())
	}
	if r := CheckLog(rec.History(), LogOptions{FinalDrain: true}); !r.Valid {
		t.Fatalf("healthy broker, lost acks: %v", r)
	}

	rec = NewRecorder()
	p.Add(Rule{Kind: FaultDuplicateProduce, APIKey: APIProduce, Count: 2})
	sendAll(t, b.Addr(), "broken", 1, 6, rec, dialer)
	testkit.Eventually(t, 5*time.Second, "both replays", func() bool { return p.Applied()[FaultDuplicateProduce] == 2 })
	drainInto(t, b.Addr(), "broken", rec)
	r := CheckLog(rec.History(), LogOptions{FinalDrain: true})
	if r.Valid || r.Count(AnomalyDuplicate) != 2 {
		t.Fatalf("broken broker not caught: %v", r)
	}
	t.Logf("caught: %v", r)
}

// pollThrough reads topic from the start through addr (with opts) until it
// has seen want records, recording each poll as process proc; afterFirst,
// if set, runs after the first poll that returned records.
func pollThrough(t *testing.T, addr, topic string, want int, proc int, rec *Recorder, afterFirst func(), opts ...kgo.Opt) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		// Small fetches: a few batches per response, so that responses
		// are still to come after the first poll.
		kgo.FetchMaxWait(100 * time.Millisecond), kgo.FetchMaxBytes(300), kgo.FetchMaxPartitionBytes(300)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := 0
	for seen < want {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			break // the broken read path may never deliver them all
		}
		var rs []Record
		fs.EachRecord(func(r *kgo.Record) {
			rs = append(rs, Record{Value: string(r.Value), Partition: r.Partition, Offset: r.Offset})
		})
		if len(rs) > 0 {
			rec.Invoke(proc, FPoll, nil)
			rec.Complete(proc, OK, FPoll, rs, nil)
			if seen == 0 && afterFirst != nil {
				afterFirst()
			}
			seen += len(rs)
			if rs[len(rs)-1].Offset+1 >= int64(want) {
				break
			}
		}
	}
}

// A consumer reading through the proxy sees every acknowledged record; with
// the broken-read-path hook it skips one batch, and the log checker (which
// knows the value from the final drain) reports the skip.
func TestProxyDroppedFetchedBatchIsCaughtAsAPollSkip(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("reads"))
	p := newTestProxy(t, b.Addr())
	dialer := kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, p.Addr())
	})
	rec := NewRecorder()
	sendAll(t, b.Addr(), "reads", 1, 20, rec, kgo.RecordPartitioner(kgo.ManualPartitioner()))

	healthy := NewRecorder()
	for _, op := range rec.History() {
		healthy.Add(op)
	}
	pollThrough(t, b.Addr(), "reads", 20, 10, healthy, nil, dialer)
	drainInto(t, b.Addr(), "reads", healthy)
	if r := CheckLog(healthy.History(), LogOptions{Assign: true, FinalDrain: true}); !r.Valid || r.Read != 20 {
		t.Fatalf("healthy read path: %v", r)
	}

	// Armed after the consumer's first poll, so that the skip lies between
	// two positions it read: a reader's start position is not in the history.
	pollThrough(t, b.Addr(), "reads", 20, 11, rec, func() {
		p.Add(Rule{Kind: FaultDropFetchedBatch, APIKey: APIFetch, Count: 1})
	}, dialer)
	if p.Applied()[FaultDropFetchedBatch] != 1 {
		t.Fatalf("hook not applied: %v", p.Applied())
	}
	drainInto(t, b.Addr(), "reads", rec)
	r := CheckLog(rec.History(), LogOptions{Assign: true, FinalDrain: true})
	if r.Valid || r.Count(AnomalyPollSkip) == 0 {
		t.Fatalf("lost read not caught: %v", r)
	}
	t.Logf("caught: %v", r)
}
