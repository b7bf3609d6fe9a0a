package broker_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/topics"
)

// These tests are the operator's view of recovery (issue 9): every way back
// up either serves everything that was acknowledged or refuses without
// changing a byte on disk.

// startOn starts a broker on dir (real files) at a random port, with warnings
// logged to the test. The caller closes it.
func startOn(t *testing.T, dir string, opts ...broker.Option) (*broker.Broker, error) {
	t.Helper()
	all := append([]broker.Option{
		broker.WithDataDir(dir),
		broker.WithKafkaAddr("127.0.0.1:0"),
		broker.WithAdminAddr("127.0.0.1:0"),
		broker.WithProperty("group.initial.rebalance.delay.ms", "0"),
		broker.WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))),
	}, opts...)
	b, err := broker.New(all...)
	if err != nil {
		t.Fatal(err)
	}
	return b, b.Start()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// produceAcked writes n records with acks=all to topic and fails the test
// unless every one is acknowledged.
func produceAcked(t *testing.T, addr, topic string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Value: fmt.Appendf(nil, "%s-%06d", topic, i)}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// readAllValues reads topic from the start until n records arrived.
func readAllValues(t *testing.T, addr, topic string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]bool{}
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records of %s: %v", len(got), n, topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	for i := range n {
		if v := fmt.Sprintf("%s-%06d", topic, i); !got[v] {
			t.Fatalf("%s lost", v)
		}
	}
}

// treeDigest maps every file under dir to a digest of its content and mode
// (directories to their mode), to prove that nothing on disk changed.
func treeDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[rel+"/"] = info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = info.Mode().String() + " " + hex.EncodeToString(sum[:8])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffDigests(before, after map[string]string) string {
	var lines []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			lines = append(lines, "removed "+k)
		} else if w != v {
			lines = append(lines, "changed "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			lines = append(lines, "added "+k)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestMissingCatalogNeverDeletesData: losing catalog.json must not lose
// topics. Each start refuses, changes nothing on disk (the lock file aside),
// and tells the operator how to rebuild the catalog; the data is all there.
func TestMissingCatalogNeverDeletesData(t *testing.T) {
	dir := t.TempDir()
	b, err := startOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	produceAcked(t, b.Addr(), "orders", 10_000)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "catalog.json")); err != nil {
		t.Fatal(err)
	}
	before := treeDigest(t, dir)
	for attempt := 1; attempt <= 2; attempt++ {
		b, err := startOn(t, dir)
		if err == nil {
			b.Close()
			t.Fatalf("start %d without catalog.json succeeded", attempt)
		}
		t.Logf("start %d refused: %v", attempt, err)
		if d := diffDigests(before, treeDigest(t, dir)); d != "" {
			t.Fatalf("start %d changed the data directory:\n%s", attempt, d)
		}
		if !strings.Contains(err.Error(), "idem storage recover-catalog") {
			t.Fatalf("the refusal does not say how to proceed: %v", err)
		}
	}
	// The operator's way back: rebuild the catalog from topic.json.
	rep, err := topics.RecoverCatalog(logstore.OSFS(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Rebuilt || len(rep.Topics) != 1 || rep.Topics[0].Topic.Name != "orders" || !rep.Topics[0].FromMeta || len(rep.Skipped) != 0 {
		t.Fatalf("recovery report: %+v", rep)
	}
	b, err = startOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	readAllValues(t, b.Addr(), "orders", 10_000)
}

// TestTopicDataOutsideTheCatalogIsKept: a catalog that no longer lists a
// topic (restored from an old backup, say) does not make its data deletable.
// The broker starts, serves the rest, reports the directory as degraded
// health, and the operator adopts it back.
func TestTopicDataOutsideTheCatalogIsKept(t *testing.T) {
	dir := t.TempDir()
	b, err := startOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	produceAcked(t, b.Addr(), "old", 100)
	b.Close()
	backup, err := os.ReadFile(filepath.Join(dir, "catalog.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err = startOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	produceAcked(t, b.Addr(), "newer", 100)
	b.Close()
	if err := os.WriteFile(filepath.Join(dir, "catalog.json"), backup, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		b, err = startOn(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		readAllValues(t, b.Addr(), "old", 100)
		if status, body := healthz(t, b); status != 503 || !strings.Contains(body, "degraded") || !strings.Contains(body, `"newer"`) {
			t.Fatalf("healthz %d %q", status, body)
		}
		b.Close()
	}
	rep, err := topics.RecoverCatalog(logstore.OSFS(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rebuilt || len(rep.Topics) != 1 || rep.Topics[0].Topic.Name != "newer" {
		t.Fatalf("adoption report: %+v", rep)
	}
	b, err = startOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	readAllValues(t, b.Addr(), "newer", 100)
	// Partitions open in the background after a start: "newer" answered,
	// "old" may still be opening ("starting", 503) for a moment. What must
	// not happen is a degraded broker once both are open.
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body := healthz(t, b)
		if status == 200 {
			break
		}
		if !strings.HasPrefix(body, "starting") || time.Now().After(deadline) {
			t.Fatalf("healthz after adoption %d %q", status, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func healthz(t *testing.T, b *broker.Broker) (int, string) {
	t.Helper()
	return healthzOf(t, b.AdminAddr())
}

func healthzOf(t *testing.T, adminAddr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// topicDir returns the data directory of a topic's partition.
func partitionDir(t *testing.T, dataDir, topic string, index int) string {
	t.Helper()
	cat, err := os.ReadFile(filepath.Join(dataDir, "catalog.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Topics []struct {
			Name string `json:"name"`
			ID   string `json:"id"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(cat, &doc); err != nil {
		t.Fatal(err)
	}
	for _, tp := range doc.Topics {
		if tp.Name == topic {
			return filepath.Join(dataDir, "topics", tp.ID, strconv.Itoa(index))
		}
	}
	t.Fatalf("topic %s not in the catalog", topic)
	return ""
}

// flipByte inverts one byte of the first segment of a partition.
func flipByte(t *testing.T, partDir string, pos int64) {
	t.Helper()
	seg := filepath.Join(partDir, "00000000000000000000.log")
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, pos); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, pos); err != nil {
		t.Fatal(err)
	}
}

// produceCode sends one Produce request carrying a one-record batch to
// topic/partition and returns the partition's error code as the broker
// answered it (clients retry some codes until their own timeout, which would
// hide the code).
func produceCode(t *testing.T, addr, topic string, partition int32) int16 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := kmsg.Record{Value: []byte("x")}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1)
	batch := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: rec.AppendTo(nil)}
	raw := batch.AppendTo(nil)
	batch.Length = int32(len(raw) - 12)
	raw = batch.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, raw
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

// TestDamagedPartitionDoesNotTakeTheBrokerDown: a flipped byte below the
// recovery point makes that partition refuse to serve (KAFKA_STORAGE_ERROR,
// degraded health, a metric), and only that partition: every other
// partition, group and transaction keeps being served.
func TestDamagedPartitionDoesNotTakeTheBrokerDown(t *testing.T) {
	dir := t.TempDir()
	b, err := startOn(t, dir, broker.WithProperty("num.partitions", "2"))
	if err != nil {
		t.Fatal(err)
	}
	produceAcked(t, b.Addr(), "good", 1000)
	produceAcked(t, b.Addr(), "bad", 1000)
	b.Close()
	flipByte(t, partitionDir(t, dir, "bad", 0), 70) // inside the first batch's records: its CRC fails

	b, err = startOn(t, dir, broker.WithProperty("num.partitions", "2"))
	if err != nil {
		t.Fatalf("one damaged partition took the broker down: %v", err)
	}
	defer b.Close()
	readAllValues(t, b.Addr(), "good", 1000)
	produceAcked(t, b.Addr(), "good", 10)
	if c := produceCode(t, b.Addr(), "bad", 0); c != kerr.KafkaStorageError.Code {
		t.Fatalf("produce to the damaged partition: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(c))
	}
	if c := produceCode(t, b.Addr(), "bad", 1); c != 0 {
		t.Fatalf("produce to the undamaged partition of the same topic: %v", kerr.ErrorForCode(c))
	}
	// Transactions and groups are served too.
	txnl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.TransactionalID("tx"), kgo.DefaultProduceTopic("good"))
	if err != nil {
		t.Fatal(err)
	}
	defer txnl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := txnl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txnl.ProduceSync(ctx, &kgo.Record{Value: []byte("in-txn")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txnl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit while another partition is offline: %v", err)
	}
	admcl := client(t, b.Addr())
	defer admcl.Close()
	adm := kadm.NewClient(admcl)
	if err := adm.CommitAllOffsets(ctx, "g", kadm.OffsetsFromRecords(kgo.Record{Topic: "good", Partition: 0, Offset: 5})); err != nil {
		t.Fatalf("offset commit while another partition is offline: %v", err)
	}
	ends, err := adm.ListEndOffsets(context.Background(), "bad")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("bad", 0); !errors.Is(o.Err, kerr.KafkaStorageError) {
		t.Fatalf("list offsets of the damaged partition: %v", o.Err)
	}
	status, body := healthz(t, b)
	if status != 503 || !strings.HasPrefix(body, "degraded") || !strings.Contains(body, "bad-0") {
		t.Fatalf("healthz %d %q", status, body)
	}
	if m := metricsText(t, b); !strings.Contains(m, `idem_partition_offline{partition="0",topic="bad"} 1`) {
		t.Fatalf("no offline metric in:\n%s", grepLines(m, "offline"))
	}
}

func metricsText(t *testing.T, b *broker.Broker) string {
	t.Helper()
	return metricsOf(t, b.AdminAddr())
}

func metricsOf(t *testing.T, adminAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func client(t *testing.T, addr string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestFailedBindLeavesNoDataDir: a start that cannot listen does not create
// or touch the data directory.
func TestFailedBindLeavesNoDataDir(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := filepath.Join(t.TempDir(), "data")
	b, err := broker.New(broker.WithDataDir(dir), broker.WithKafkaAddr(busy.Addr().String()), broker.WithAdminAddr(""))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err == nil {
		b.Close()
		t.Fatal("started on a busy port")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the data directory was created by a start that could not bind: %v", err)
	}
}

// TestRestartWithoutIdempotentProducersWarnsAboutNothing: data that never
// had an idempotent producer has nothing to warn about on a restart (the
// producer-id reservation file is written on the first start).
func TestRestartWithoutIdempotentProducersWarnsAboutNothing(t *testing.T) {
	dir := t.TempDir()
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for i := range 3 {
		b, err := startOn(t, dir, broker.WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("plain"), kgo.AllowAutoTopicCreation(), kgo.DisableIdempotentWrite())
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			cl.Close()
		}
		b.Close()
	}
	if s := buf.String(); s != "" {
		t.Fatalf("restarts of healthy data logged warnings:\n%s", s)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDamageFoundByAReadTakesThePartitionOffline: a start validates only the
// tail of a log, so damage in a sealed segment below the recovery point is
// found when a fetch reads it. From then on the partition is offline as if
// the damage had been found at open: fetch and produce answer
// KAFKA_STORAGE_ERROR, /healthz is degraded and names it, the offline metric
// is 1, and the rest is served. (Before, only the fetch of the damaged batch
// failed, in a loop, with health ok and nothing logged.)
func TestDamageFoundByAReadTakesThePartitionOffline(t *testing.T) {
	dir := t.TempDir()
	opts := []broker.Option{broker.WithProperty("num.partitions", "1"), broker.WithProperty("log.segment.bytes", "4096")}
	b, err := startOn(t, dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	produceAcked(t, b.Addr(), "good", 100)
	for range 10 { // one batch of ~2 KiB each: many 4 KiB segments, the first sealed
		produceAcked(t, b.Addr(), "bad", 100)
	}
	b.Close()
	flipByte(t, partitionDir(t, dir, "bad", 0), 70) // the first sealed segment's first batch

	b, err = startOn(t, dir, opts...)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer b.Close()
	if status, body := healthz(t, b); status != 200 {
		t.Fatalf("before any read the damage is not known, yet healthz is %d %q", status, body)
	}
	cl := client(t, b.Addr())
	defer cl.Close()
	fetch := func() int16 {
		t.Helper()
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MaxBytes, req.SessionEpoch = 0, 1<<20, -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "bad"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(context.Background(), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if c := fetch(); c != kerr.KafkaStorageError.Code {
		t.Fatalf("fetch of the damaged batch: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(c))
	}
	if c := produceCode(t, b.Addr(), "bad", 0); c != kerr.KafkaStorageError.Code {
		t.Fatalf("produce after the damage was found: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(c))
	}
	status, body := healthz(t, b)
	if status != 503 || !strings.HasPrefix(body, "degraded") || !strings.Contains(body, "bad-0") {
		t.Fatalf("healthz after the damage was found: %d %q", status, body)
	}
	if m := metricsText(t, b); !strings.Contains(m, `idem_partition_offline{partition="0",topic="bad"} 1`) {
		t.Fatalf("no offline metric in:\n%s", grepLines(m, "offline"))
	}
	readAllValues(t, b.Addr(), "good", 100)
	produceAcked(t, b.Addr(), "good", 10)
}
