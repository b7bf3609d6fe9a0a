package broker_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// These tests are issue 9's defect 4: an unauthenticated client must not be
// able to exhaust the broker's memory, file descriptors or catalog.

// heapInUse is the process's live heap and goroutine stacks after a GC.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// frame encodes req as a request frame with correlation id corr.
func frame(req kmsg.Request, corr int32) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 0xffff) // null client id
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// TestUnreadFetchAnswersHoldBoundedMemory: clients that pipeline fetches
// and never read the answers make the broker hold at most the memory budget
// (queued.max.request.bytes) of records, not a full answer per connection.
func TestUnreadFetchAnswersHoldBoundedMemory(t *testing.T) {
	const budget = 32 << 20
	b := brokertest.Run(t, broker.WithTopics("big"),
		broker.WithProperty("socket.request.max.bytes", "16777216"),
		broker.WithProperty("queued.max.request.bytes", strconv.Itoa(budget)))
	cl := b.Client(t, kgo.DefaultProduceTopic("big"), kgo.ProducerBatchMaxBytes(1<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	val := make([]byte, 64<<10)
	rand.Read(val) // incompressible
	var recs []*kgo.Record
	for range 320 { // 20 MiB
		recs = append(recs, &kgo.Record{Value: val})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(12)
	fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = 0, 1, 50<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "big"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = 0, 0, 50<<20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)

	before := heapInUse()
	const conns, perConn = 40, 20
	for range conns {
		nc, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// A receive buffer this small makes the broker's writes block
		// at once, as with a client that stopped reading.
		nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		go func() {
			nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
			for i := range perConn {
				if _, err := nc.Write(frame(fetch, int32(i))); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(3 * time.Second) // let the broker read and answer what it will
	grew := heapInUse() - before
	t.Logf("heap grew by %d MiB with %d connections pipelining fetches of a 20 MiB log without reading (budget %d MiB)", grew>>20, conns, budget>>20)
	// Unbounded, every connection would hold a 20 MiB answer and its
	// encoding; the budget bounds the records read to 32 MiB
	// (plus one batch per answer), and each encoding holds no more.
	if grew > 80<<20 {
		t.Fatalf("the broker holds %d MiB for unread fetch answers", grew>>20)
	}
}

// TestPartialProduceFramesWaitForBudget: large request frames that arrive
// slowly take budget before their bodies are read; once it is spent, further
// large frames wait unread instead of each allocating its size.
func TestPartialProduceFramesWaitForBudget(t *testing.T) {
	b := brokertest.Run(t)
	before := heapInUse()
	const conns, declared, sent = 10, 90 << 20, 45 << 20
	var wg sync.WaitGroup
	body := make([]byte, 1<<20)
	for i := range conns {
		nc, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			hdr := binary.BigEndian.AppendUint32(nil, declared)
			hdr = binary.BigEndian.AppendUint16(hdr, 0) // Produce
			hdr = binary.BigEndian.AppendUint16(hdr, 9) // v9
			hdr = binary.BigEndian.AppendUint32(hdr, uint32(i))
			hdr = binary.BigEndian.AppendUint16(hdr, 0xffff)
			nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := nc.Write(hdr); err != nil {
				return
			}
			for n := 0; n < sent; n += len(body) {
				if _, err := nc.Write(body); err != nil {
					return // not read: waiting for budget
				}
			}
		}()
	}
	wg.Wait()
	grew := heapInUse() - before
	t.Logf("heap grew by %d MiB with %d connections each half way through a 90 MiB frame", grew>>20, conns)
	// Unbounded, every connection buffers what it sent (450 MiB); with the
	// 256 MiB budget only two 90 MiB frames are read at once.
	if grew > 300<<20 {
		t.Fatalf("the broker holds %d MiB of partial frames", grew>>20)
	}
}

// TestIdleConnectionsAreCheap: an idle connection holds a small read buffer
// and no write buffer.
func TestIdleConnectionsAreCheap(t *testing.T) {
	b := brokertest.Run(t)
	// Warm up one connection fully so lazily built state is not counted.
	cl := b.Client(t)
	if _, err := kmsg.NewPtrApiVersionsRequest().RequestWith(context.Background(), cl); err != nil {
		t.Fatal(err)
	}
	before := heapInUse()
	const n = 1000
	for range n {
		nc, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// One request each, so that both the reader and the writer ran.
		req := kmsg.NewPtrApiVersionsRequest()
		if _, err := nc.Write(frame(req, 1)); err != nil {
			t.Fatal(err)
		}
		var size [4]byte
		if _, err := io.ReadFull(nc, size[:]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(io.Discard, nc, int64(binary.BigEndian.Uint32(size[:]))); err != nil {
			t.Fatal(err)
		}
	}
	per := (heapInUse() - before) / n
	t.Logf("%d idle connections: %d KiB each (client and server side in one process)", n, per>>10)
	if per > 40<<10 {
		t.Fatalf("an idle connection costs %d KiB", per>>10)
	}
}

// TestConnectionLimits: connections beyond max.connections.per.ip and
// max.connections are closed at accept, and counted; closing one makes room.
func TestConnectionLimits(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("max.connections.per.ip", "3"), broker.WithProperty("max.connections", "5"))
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	served := func(nc net.Conn) bool {
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(frame(kmsg.NewPtrApiVersionsRequest(), 7)); err != nil {
			return false
		}
		var size [4]byte
		_, err := io.ReadFull(nc, size[:])
		if err == nil {
			_, err = io.CopyN(io.Discard, nc, int64(binary.BigEndian.Uint32(size[:])))
		}
		return err == nil
	}
	var open []net.Conn
	for i := range 3 {
		nc := dial()
		if !served(nc) {
			t.Fatalf("connection %d under the limit was not served", i+1)
		}
		open = append(open, nc)
	}
	if extra := dial(); served(extra) {
		t.Fatal("a fourth connection from one IP was served (max.connections.per.ip=3)")
	}
	open[0].Close()
	time.Sleep(100 * time.Millisecond) // the broker notices the close
	if nc := dial(); !served(nc) {
		t.Fatal("no room after a connection closed")
	}
	if m := metricsOf(t, b.AdminAddr()); !strings.Contains(m, `idem_kafka_connections_refused_total{limit="max.connections.per.ip"} 1`) {
		t.Fatalf("refusal not counted:\n%s", grepLines(m, "refused"))
	}
}

// TestAutoCreationIsBounded: one Metadata request naming thousands of
// unknown topics creates at most idem.auto.create.topics.max.per.request.
func TestAutoCreationIsBounded(t *testing.T) {
	b := brokertest.Run(t)
	cl := b.Client(t)
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = true
	for i := range 3000 {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("auto-" + strings.Repeat("x", i%7) + "-" + strconv.Itoa(i))
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	for _, tp := range resp.Topics {
		if tp.ErrorCode == 0 {
			created++
		}
	}
	all, err := kmsg.NewPtrMetadataRequest().RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	exist := 0
	for _, tp := range all.Topics {
		if !tp.IsInternal {
			exist++
		}
	}
	if created > 20 || exist > 20 {
		t.Fatalf("one Metadata request auto-created %d topics (%d exist)", created, exist)
	}
	if created == 0 {
		t.Fatal("auto-creation created nothing")
	}
}
