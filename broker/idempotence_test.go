package broker_test

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// rawBatch builds a v2 record batch of n records the way a producer would.
func rawBatch(pid int64, epoch int16, seq int32, n int, ts int64, tag string) []byte {
	var recs []byte
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: int64(i), Value: fmt.Appendf(nil, "%s-%d", tag, i)}
		r.Length = int32(len(r.AppendTo(nil)) - 1) // the length varint of 0 is one byte
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(n - 1),
		FirstTimestamp: ts, MaxTimestamp: ts + int64(n-1),
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: int32(n), Records: recs,
	}
	out := b.AppendTo(nil)
	b.Length = int32(len(out) - 12)
	out = b.AppendTo(nil)
	logstore.FixCRC(out)
	return out
}

// produceRaw sends one batch to topic/0 with acks=all and returns the
// partition's error code and base offset.
func produceRaw(t *testing.T, cl *kgo.Client, topic string, batch []byte) (int16, int64) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = append([]byte(nil), batch...)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	return p.ErrorCode, p.BaseOffset
}

func initPID(t *testing.T, cl *kgo.Client) (int64, int16) {
	t.Helper()
	resp, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctxT(t), cl)
	if err != nil || resp.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", err, kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp.ProducerID, resp.ProducerEpoch
}

func mustCode(t *testing.T, got, want int16, what string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: error %v, want %v", what, kerr.ErrorForCode(got), kerr.ErrorForCode(want))
	}
}

func countRecords(t *testing.T, b *brokertest.Broker, topic string) int {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	ends, err := adm.ListEndOffsets(ctxT(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := ends.Lookup(topic, 0)
	return int(o.Offset)
}

func TestIdempotentDedup(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("idem"))
	cl := b.Client(t)
	pid, epoch := initPID(t, cl)
	pid2, _ := initPID(t, cl)
	if pid2 == pid {
		t.Fatal("producer id reused")
	}

	b0 := rawBatch(pid, epoch, 0, 3, 1000, "a")
	c, off0 := produceRaw(t, cl, "idem", b0)
	mustCode(t, c, 0, "first batch")
	b1 := rawBatch(pid, epoch, 3, 2, 1000, "b")
	c, off1 := produceRaw(t, cl, "idem", b1)
	mustCode(t, c, 0, "second batch")
	if off0 != 0 || off1 != 3 {
		t.Fatalf("offsets %d %d", off0, off1)
	}
	// Retries of both: success with the original offsets, nothing appended.
	c, off := produceRaw(t, cl, "idem", b0)
	mustCode(t, c, 0, "retry of first")
	if off != off0 {
		t.Fatalf("duplicate got offset %d, want %d", off, off0)
	}
	c, off = produceRaw(t, cl, "idem", b1)
	mustCode(t, c, 0, "retry of second")
	if off != off1 {
		t.Fatalf("duplicate got offset %d, want %d", off, off1)
	}
	if n := countRecords(t, b, "idem"); n != 5 {
		t.Fatalf("log holds %d records, want 5", n)
	}
	// A gap is refused.
	c, _ = produceRaw(t, cl, "idem", rawBatch(pid, epoch, 9, 1, 1000, "gap"))
	mustCode(t, c, kerr.OutOfOrderSequenceNumber.Code, "gap")
	// A newer epoch must start at 0; then the old epoch is fenced.
	c, _ = produceRaw(t, cl, "idem", rawBatch(pid, epoch+1, 5, 1, 1000, "x"))
	mustCode(t, c, kerr.OutOfOrderSequenceNumber.Code, "new epoch not at 0")
	c, _ = produceRaw(t, cl, "idem", rawBatch(pid, epoch+1, 0, 1, 1000, "e1"))
	mustCode(t, c, 0, "new epoch at 0")
	c, _ = produceRaw(t, cl, "idem", rawBatch(pid, epoch, 5, 1, 1000, "zombie"))
	mustCode(t, c, kerr.InvalidProducerEpoch.Code, "old epoch")
	// A new producer may start anywhere (KIP-360).
	c, _ = produceRaw(t, cl, "idem", rawBatch(pid2, 0, 42, 1, 1000, "p2"))
	mustCode(t, c, 0, "unknown producer")
	// Corrupt CRC and bad structure.
	bad := rawBatch(pid2, 0, 43, 1, 1000, "crc")
	bad[len(bad)-1] ^= 0xff
	c, _ = produceRaw(t, cl, "idem", bad)
	mustCode(t, c, kerr.CorruptMessage.Code, "bad crc")
	two := append(rawBatch(-1, -1, -1, 1, 1000, "one"), rawBatch(-1, -1, -1, 1, 1000, "two")...)
	c, _ = produceRaw(t, cl, "idem", two)
	mustCode(t, c, kerr.InvalidRecord.Code, "two batches")
}

// TestIdempotentAcrossRestart checks that producer state survives a clean
// restart, a kill -9 (the page cache survives, no snapshot was written) and a
// power loss (only fsynced bytes survive), so a retry is still deduplicated.
func TestIdempotentAcrossRestart(t *testing.T) {
	for _, mode := range []string{"clean", "kill", "powerloss"} {
		t.Run(mode, func(t *testing.T) {
			mem := logstore.NewMemFS()
			b := brokertest.Run(t, brokerkit.WithFS(mem), broker.WithDataDir("/data"), broker.WithTopics("t"))
			cl := b.Client(t)
			pid, epoch := initPID(t, cl)
			batches := [][]byte{rawBatch(pid, epoch, 0, 2, 1000, "a"), rawBatch(pid, epoch, 2, 2, 1000, "b")}
			for i, bt := range batches {
				c, off := produceRaw(t, cl, "t", bt)
				mustCode(t, c, 0, "produce")
				if off != int64(2*i) {
					t.Fatalf("offset %d", off)
				}
			}
			switch mode {
			case "clean":
				b.Restart(t)
			case "kill":
				clone := mem.KillClone()
				b.Restart(t, brokerkit.WithFS(clone))
			case "powerloss":
				clone := mem.CrashClone(logstore.CrashOptions{})
				b.Restart(t, brokerkit.WithFS(clone))
			}
			cl = b.Client(t)
			for i, bt := range batches {
				c, off := produceRaw(t, cl, "t", bt)
				mustCode(t, c, 0, "retry after restart")
				if off != int64(2*i) {
					t.Fatalf("retry %d after %s restart: offset %d, want %d (not deduplicated)", i, mode, off, 2*i)
				}
			}
			if n := countRecords(t, b, "t"); n != 4 {
				t.Fatalf("log holds %d records after retries, want 4", n)
			}
			c, off := produceRaw(t, cl, "t", rawBatch(pid, epoch, 4, 1, 1000, "c"))
			mustCode(t, c, 0, "next batch")
			if off != 4 {
				t.Fatalf("next offset %d", off)
			}
			c, _ = produceRaw(t, cl, "t", rawBatch(pid, epoch, 9, 1, 1000, "gap"))
			mustCode(t, c, kerr.OutOfOrderSequenceNumber.Code, "gap after restart")
			// Producer ids are never reused after a restart.
			pid2, _ := initPID(t, cl)
			if pid2 <= pid {
				t.Fatalf("producer id %d after restart, earlier %d", pid2, pid)
			}
			recs := consumeN(t, b, "t", 5)
			if string(recs[0].Value) != "a-0" || string(recs[4].Value) != "c-0" {
				t.Fatalf("records %q .. %q", recs[0].Value, recs[4].Value)
			}
		})
	}
}

// TestKgoIdempotentProducer drives franz-go's own idempotent producer (5
// in-flight requests) across a restart.
func TestKgoIdempotentProducer(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("kgo"))
	cl := b.Client(t, kgo.DefaultProduceTopic("kgo"), kgo.MaxBufferedRecords(10000))
	const n = 5000
	for i := range n {
		cl.Produce(ctxT(t), &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
		if i == n/2 {
			b.Restart(t)
		}
	}
	if err := cl.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	recs := consumeN(t, b, "kgo", n)
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[string(r.Value)] {
			t.Fatalf("duplicate %s", r.Value)
		}
		seen[string(r.Value)] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct records, want %d", len(seen), n)
	}
}

// TestLostProducerIDFileNeverReusesIDs: if the reservation file disappears,
// ids restart above every producer id the partitions remember, so a new
// producer's first batch is never mistaken for an old producer's retry.
func TestLostProducerIDFileNeverReusesIDs(t *testing.T) {
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, brokerkit.WithFS(mem), broker.WithDataDir("/data"), broker.WithTopics("p"))
	cl := b.Client(t)
	pid, epoch := initPID(t, cl)
	c, _ := produceRaw(t, cl, "p", rawBatch(pid, epoch, 0, 1, 1000, "old"))
	mustCode(t, c, 0, "produce")
	b.Close()
	mem.Remove("/data/producer_ids")
	b.Restart(t)
	cl = b.Client(t)
	pid2, epoch2 := initPID(t, cl)
	if pid2 <= pid {
		t.Fatalf("producer id %d reused after losing the reservation file (old %d)", pid2, pid)
	}
	c, off := produceRaw(t, cl, "p", rawBatch(pid2, epoch2, 0, 1, 1000, "new"))
	mustCode(t, c, 0, "new producer")
	if off != 1 {
		t.Fatalf("new producer's batch at %d: treated as a duplicate", off)
	}
}
