package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

func TestFetchLongPollWakesOnAppend(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("lp"))
	cl := b.Client(t)
	type result struct {
		resp *kmsg.FetchResponse
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 10000, 1, 1<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "lp"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		start := time.Now()
		resp, err := req.RequestWith(context.Background(), cl)
		done <- result{resp, err, time.Since(start)}
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("fetch returned before any data: %+v", r)
	default:
	}
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "lp", Value: []byte("wake")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	p := r.resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || len(p.RecordBatches) == 0 || p.HighWatermark != 1 {
		t.Fatalf("fetch: code %d, %d bytes, hwm %d", p.ErrorCode, len(p.RecordBatches), p.HighWatermark)
	}
	if r.took > 5*time.Second {
		t.Fatalf("long-poll took %v: not woken by the append", r.took)
	}
	if p.PreferredReadReplica != -1 || p.LastStableOffset != 1 || p.LogStartOffset != 0 {
		t.Fatalf("defaults: preferred %d lso %d start %d", p.PreferredReadReplica, p.LastStableOffset, p.LogStartOffset)
	}
}

func TestFetchMaxWaitAndOutOfRange(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("w"))
	cl := b.Client(t)
	fetch := func(offset int64, wait int32) (*kmsg.FetchResponseTopicPartition, time.Duration) {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MinBytes = wait, 1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "w"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes = offset, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		start := time.Now()
		resp, err := req.RequestWith(ctxT(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		return &resp.Topics[0].Partitions[0], time.Since(start)
	}
	p, took := fetch(0, 300)
	if p.ErrorCode != 0 || took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("empty poll: code %d took %v", p.ErrorCode, took)
	}
	p, _ = fetch(5, 0)
	mustCode(t, p.ErrorCode, kerr.OffsetOutOfRange.Code, "fetch past the end")
}

func TestListOffsetsByTime(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("ts"))
	cl := b.Client(t, kgo.DefaultProduceTopic("ts"))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 10 {
		r := &kgo.Record{Value: fmt.Appendf(nil, "%d", i), Timestamp: base.Add(time.Duration(i) * time.Minute)}
		if err := cl.ProduceSync(ctxT(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	check := func(ms int64, wantOff int64) {
		t.Helper()
		lo, err := adm.ListOffsetsAfterMilli(ctxT(t), ms, "ts")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := lo.Lookup("ts", 0)
		if o.Err != nil || o.Offset != wantOff {
			t.Fatalf("after %d: offset %d err %v, want %d", ms, o.Offset, o.Err, wantOff)
		}
	}
	check(base.UnixMilli(), 0)
	check(base.Add(3*time.Minute).UnixMilli(), 3)
	check(base.Add(3*time.Minute+time.Second).UnixMilli(), 4)
	// Past the last record Kafka answers -1, which kadm reports as the end.
	lo, err := adm.ListOffsetsAfterMilli(ctxT(t), base.Add(time.Hour).UnixMilli(), "ts")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := lo.Lookup("ts", 0); o.Err != nil || (o.Offset != -1 && o.Offset != 10) {
		t.Fatalf("after the end: %+v", o)
	}
	// Max timestamp (-3).
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "ts"
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = -3
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.Topics[0].Partitions[0]; p.Offset != 9 || p.Timestamp != base.Add(9*time.Minute).UnixMilli() {
		t.Fatalf("max timestamp: offset %d ts %d", p.Offset, p.Timestamp)
	}
	// Earliest and latest.
	st, _ := adm.ListStartOffsets(ctxT(t), "ts")
	en, _ := adm.ListEndOffsets(ctxT(t), "ts")
	if s, _ := st.Lookup("ts", 0); s.Offset != 0 {
		t.Fatalf("start %d", s.Offset)
	}
	if e, _ := en.Lookup("ts", 0); e.Offset != 10 {
		t.Fatalf("end %d", e.Offset)
	}
}

func TestAdminTopicsAndConfigs(t *testing.T) {
	b := brokertest.Run(t)
	adm := kadm.NewClient(b.Client(t))
	ctx := ctxT(t)
	ret := "3600000"
	cr, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": &ret}, "cfg")
	if err != nil || cr.Err != nil {
		t.Fatal(err, cr.Err)
	}
	if r, _ := adm.CreateTopic(ctx, 2, 3, nil, "rf3"); r.Err != kerr.InvalidReplicationFactor {
		t.Fatalf("replication factor 3: %v", r.Err)
	}
	bad := "soon"
	if r, _ := adm.CreateTopic(ctx, 1, 1, map[string]*string{"retention.ms": &bad}, "badcfg"); r.Err != kerr.InvalidConfig {
		t.Fatalf("bad config: %v", r.Err)
	}
	if r, _ := adm.CreateTopic(ctx, 1, 1, nil, "cfg"); r.Err != kerr.TopicAlreadyExists {
		t.Fatalf("duplicate topic: %v", r.Err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("cfg", nil)
	vals := map[string]string{}
	for _, c := range rc.Configs {
		vals[c.Key] = c.MaybeValue()
	}
	if vals["retention.ms"] != "3600000" || vals["max.message.bytes"] != "1048588" || vals["segment.bytes"] != "1073741824" {
		t.Fatalf("topic configs %v", vals)
	}
	bcs, err := adm.DescribeBrokerConfigs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, bc := range bcs {
		for _, c := range bc.Configs {
			if c.Key == "num.partitions" && c.MaybeValue() == "1" {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("broker config num.partitions not described")
	}
	if _, err := adm.CreatePartitions(ctx, 3, "cfg"); err != nil {
		t.Fatal(err)
	}
	td, _ := adm.ListTopics(ctx, "cfg")
	if n := len(td["cfg"].Partitions); n != 5 {
		t.Fatalf("%d partitions after adding 3", n)
	}
	oldID := td["cfg"].ID

	b.Restart(t)
	adm = kadm.NewClient(b.Client(t))
	td, _ = adm.ListTopics(ctx, "cfg")
	if td["cfg"].ID != oldID || len(td["cfg"].Partitions) != 5 {
		t.Fatalf("after restart: id %v (was %v), %d partitions", td["cfg"].ID, oldID, len(td["cfg"].Partitions))
	}
	dr, err := adm.DeleteTopics(ctx, "cfg")
	if err != nil || dr["cfg"].Err != nil {
		t.Fatal(err, dr["cfg"].Err)
	}
	if r, err := adm.CreateTopic(ctx, 1, 1, nil, "cfg"); err != nil || r.Err != nil {
		t.Fatal(err, r.Err)
	}
	adm = kadm.NewClient(b.Client(t)) // a fresh client: kgo caches metadata briefly
	td, _ = adm.ListTopics(ctx, "cfg")
	if td["cfg"].ID == oldID {
		t.Fatalf("topic id reused after delete and create: %v %+v", oldID, td["cfg"])
	}
}

func TestPowerLossKeepsAcknowledged(t *testing.T) {
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, brokerkit.WithFS(mem), broker.WithDataDir("/data"), broker.WithTopics("pl"))
	cl := b.Client(t, kgo.DefaultProduceTopic("pl"))
	const n = 2000
	acked := 0
	for i := range n {
		cl.Produce(ctxT(t), &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}, func(_ *kgo.Record, err error) {
			if err == nil {
				acked++ // callbacks run serially per partition
			}
		})
	}
	if err := cl.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(logstore.CrashOptions{})
	b.Restart(t, brokerkit.WithFS(crashed))
	recs := consumeN(t, b, "pl", acked)
	for i, r := range recs[:acked] {
		if string(r.Value) != fmt.Sprint(i) {
			t.Fatalf("record %d is %q", i, r.Value)
		}
	}
}

func TestAdminHTTP(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("m"))
	cl := b.Client(t)
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "m", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	get := func(path string) string {
		resp, err := http.Get(b.AdminURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		return string(body)
	}
	if h := get("/healthz"); strings.TrimSpace(h) != "ok" {
		t.Fatalf("healthz %q", h)
	}
	m := get("/metrics")
	for _, want := range []string{`idem_partition_high_watermark{partition="0",topic="m"} 1`, `idem_kafka_request_latency_seconds_count{api="Produce"}`, `idem_log_size_bytes{topic="m"}`} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
}

// TestFsyncFailure: once an fsync fails, acks=all produce answers
// KAFKA_STORAGE_ERROR (never success), later writes are refused even after
// the disk "heals" (a retried fsync could falsely succeed), and /healthz
// reports the partition.
func TestFsyncFailure(t *testing.T) {
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, brokerkit.WithFS(mem), broker.WithDataDir("/data"), broker.WithTopics("f"))
	cl := b.Client(t)
	pid, epoch := initPID(t, cl)
	c, _ := produceRaw(t, cl, "f", rawBatch(pid, epoch, 0, 1, 1000, "ok"))
	mustCode(t, c, 0, "before the failure")
	mem.SetSyncError(fmt.Errorf("EIO"))
	c, _ = produceRaw(t, cl, "f", rawBatch(pid, epoch, 1, 1, 1000, "lost"))
	mustCode(t, c, kerr.KafkaStorageError.Code, "acks=all during fsync failure")
	mem.SetSyncError(nil)
	c, _ = produceRaw(t, cl, "f", rawBatch(pid, epoch, 2, 1, 1000, "after"))
	mustCode(t, c, kerr.KafkaStorageError.Code, "after the disk heals")
	resp, err := http.Get(b.AdminURL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "f-0") {
		t.Fatalf("healthz %d %q", resp.StatusCode, body)
	}
}

func TestTopicMaxMessageBytes(t *testing.T) {
	b := brokertest.Run(t)
	adm := kadm.NewClient(b.Client(t))
	small := "200"
	if r, err := adm.CreateTopic(ctxT(t), 1, 1, map[string]*string{"max.message.bytes": &small}, "small"); err != nil || r.Err != nil {
		t.Fatal(err, r.Err)
	}
	cl := b.Client(t, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordRetries(0))
	err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "small", Value: []byte(strings.Repeat("x", 1000))}).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("oversized uncompressed batch: %v", err)
	}
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "small", Value: []byte("ok")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestRetention: topic retention settings reach the log and the periodic
// retention pass advances the log start offset.
func TestRetention(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("log.retention.check.interval.ms", "50"))
	adm := kadm.NewClient(b.Client(t))
	seg, ret := "1024", "1"
	cfg := map[string]*string{"segment.bytes": &seg, "retention.ms": &ret}
	if r, err := adm.CreateTopic(ctxT(t), 1, 1, cfg, "short"); err != nil || r.Err != nil {
		t.Fatal(err, r.Err)
	}
	cl := b.Client(t, kgo.DefaultProduceTopic("short"), kgo.ProducerBatchCompression(kgo.NoCompression()))
	old := time.Now().Add(-time.Hour)
	for i := range 20 {
		r := &kgo.Record{Value: []byte(strings.Repeat("r", 300)), Timestamp: old.Add(time.Duration(i) * time.Millisecond)}
		if err := cl.ProduceSync(ctxT(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := adm.ListStartOffsets(ctxT(t), "short")
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := st.Lookup("short", 0); o.Offset > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("log start offset never advanced")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCloseDoesNotWaitForLongPolls: a graceful Close answers parked fetches
// early instead of waiting out their MaxWait.
func TestCloseDoesNotWaitForLongPolls(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("idle"))
	cl := b.Client(t)
	done := make(chan error, 1)
	go func() {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MinBytes = 60000, 1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "idle"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		_, err := req.RequestWith(context.Background(), cl)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %v with a parked fetch", took)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("parked fetch never answered")
	}
}

func TestDeleteRecords(t *testing.T) {
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, brokerkit.WithFS(mem), broker.WithDataDir("/data"), broker.WithTopics("dr"))
	cl := b.Client(t, kgo.DefaultProduceTopic("dr"))
	for i := range 10 {
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	o := kadm.Offsets{}
	o.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 4})
	res, err := adm.DeleteRecords(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := res.Lookup("dr", 0); r.Err != nil || r.LowWatermark != 4 {
		t.Fatalf("delete records: %+v", r)
	}
	o = kadm.Offsets{}
	o.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 99})
	res, _ = adm.DeleteRecords(ctxT(t), o)
	if r, _ := res.Lookup("dr", 0); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("past the end: %+v", r)
	}
	// The new start survives a power loss.
	brokerkit.CrashRestart(t, b, mem, true)
	adm = kadm.NewClient(b.Client(t))
	st, err := adm.ListStartOffsets(ctxT(t), "dr")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := st.Lookup("dr", 0); s.Offset != 4 {
		t.Fatalf("start after power loss %d", s.Offset)
	}
	recs := consumeN(t, b, "dr", 6)
	if string(recs[0].Value) != "4" {
		t.Fatalf("first record %q", recs[0].Value)
	}
}

// TestListOffsetsInsideBatch: a time lookup finds the exact record inside an
// uncompressed batch, not just the batch.
func TestListOffsetsInsideBatch(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("tb"))
	cl := b.Client(t)
	c, _ := produceRaw(t, cl, "tb", rawBatch(-1, -1, -1, 5, 1000, "r")) // timestamps 1000..1004
	mustCode(t, c, 0, "produce")
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "tb"
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = 1002
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.Topics[0].Partitions[0]; p.Offset != 2 || p.Timestamp != 1002 {
		t.Fatalf("offset %d timestamp %d, want 2 and 1002", p.Offset, p.Timestamp)
	}
}

// TestFetchMaxBytes: at least one batch even past the limits (KIP-74), whole
// batches only, and the response limit stops further partitions once data is
// in hand.
func TestFetchMaxBytes(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("num.partitions", "2"), broker.WithTopics("mb"))
	cl := b.Client(t)
	for part := int32(0); part < 2; part++ {
		for i := range 3 {
			req := kmsg.NewPtrProduceRequest()
			req.Acks, req.TimeoutMillis = -1, 5000
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = "mb"
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition = part
			rp.Records = rawBatch(-1, -1, -1, 10, 1000, fmt.Sprint(i))
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			if _, err := req.RequestWith(ctxT(t), cl); err != nil {
				t.Fatal(err)
			}
		}
	}
	batchSize := len(rawBatch(-1, -1, -1, 10, 1000, "0"))
	fetch := func(maxBytes, partMax int32) []int {
		req := kmsg.NewPtrFetchRequest()
		req.MaxBytes = maxBytes
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "mb"
		for part := int32(0); part < 2; part++ {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.PartitionMaxBytes = part, partMax
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxT(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for _, p := range resp.Topics[0].Partitions {
			if len(p.RecordBatches)%batchSize != 0 {
				t.Fatalf("partial batch: %d bytes", len(p.RecordBatches))
			}
			sizes = append(sizes, len(p.RecordBatches)/batchSize)
		}
		return sizes
	}
	if got := fmt.Sprint(fetch(1<<20, 10)); got != "[1 1]" {
		t.Fatalf("tiny partition limit: batches %s, want [1 1]", got)
	}
	if got := fmt.Sprint(fetch(10, 1<<20)); got != "[1 0]" {
		t.Fatalf("tiny response limit: batches %s, want [1 0]", got)
	}
	if got := fmt.Sprint(fetch(1<<20, 1<<20)); got != "[3 3]" {
		t.Fatalf("no limits: batches %s, want [3 3]", got)
	}
}

func TestDescribeLogDirs(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("ld"))
	cl := b.Client(t)
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "ld", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dirs, err := kadm.NewClient(cl).DescribeAllLogDirs(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	dirs.Each(func(d kadm.DescribedLogDir) {
		d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
			if p.Topic == "ld" && p.Partition == 0 && p.Size > 0 {
				found = true
			}
		})
	})
	if !found {
		t.Fatalf("ld-0 not described with a size: %+v", dirs)
	}
}

// TestConcurrentConsumersReadOnlyTheirOwnRecords: Fetch answers are read
// into recycled buffers and encoded into recycled writer buffers; consumers
// of different topics fetching at the same time, many small fetches each,
// must each get exactly their own records, every one, in order (a buffer
// handed back while still in use would show up here as foreign or damaged
// records).
func TestConcurrentConsumersReadOnlyTheirOwnRecords(t *testing.T) {
	const consumers, records = 4, 3000
	topics := make([]string, consumers)
	for i := range topics {
		topics[i] = fmt.Sprintf("own-%d", i)
	}
	b := brokertest.Run(t, broker.WithProperty("num.partitions", "2"), broker.WithTopics(topics...))
	for _, topic := range topics {
		// Small batches, so that every fetch carries several partitions.
		cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(2<<10))
		for i := range records {
			r := &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: fmt.Appendf(nil, "%s/%06d/%s", topic, i, strings.Repeat("x", i%300))}
			cl.Produce(ctxT(t), r, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce: %v", err)
				}
			})
		}
		if err := cl.Flush(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, consumers)
	for _, topic := range topics {
		go func() {
			cl := b.Client(t, kgo.ConsumeTopics(topic), kgo.FetchMaxPartitionBytes(4<<10), kgo.FetchMaxBytes(8<<10))
			next := [2]int{0, 1} // partition p holds the records i with i%2 == p
			for n := 0; n < records; {
				fs := cl.PollFetches(ctxT(t))
				if err := fs.Err(); err != nil {
					errs <- err
					return
				}
				for it := fs.RecordIter(); !it.Done(); {
					r := it.Next()
					want := fmt.Sprintf("%s/%06d/%s", topic, next[r.Partition], strings.Repeat("x", next[r.Partition]%300))
					if r.Topic != topic || string(r.Value) != want {
						errs <- fmt.Errorf("consumer of %s, partition %d: got %q, want %q", topic, r.Partition, r.Value, want)
						return
					}
					next[r.Partition] += 2
					n++
				}
			}
			errs <- nil
		}()
	}
	for range consumers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
