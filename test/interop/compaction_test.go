package interop

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// Log compaction seen by real clients (docs/compaction.md). The broker's
// cleaner runs every few milliseconds; topics roll small segments so that
// there is something to clean, and every record produced before a test
// waits is sealed by a later one.

// compactingBroker starts a broker whose cleaner looks for work often.
func compactingBroker(t *testing.T, opts ...broker.Option) *brokertest.Broker {
	return startBroker(t, append([]broker.Option{broker.WithProperty("log.cleaner.backoff.ms", "20")}, opts...)...)
}

// createCompacted creates a one-partition topic with cleanup.policy policy
// that rolls segments often and is cleaned as soon as anything is dirty.
func createCompacted(t *testing.T, b *brokertest.Broker, topic, policy string, extra map[string]string) {
	t.Helper()
	configs := map[string]*string{
		"cleanup.policy":            kadm.StringPtr(policy),
		"segment.bytes":             kadm.StringPtr("1024"),
		"segment.ms":                kadm.StringPtr("100"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.01"),
	}
	for k, v := range extra {
		configs[k] = kadm.StringPtr(v)
	}
	resp, err := kadm.NewClient(b.Client(t)).CreateTopic(testkit.Context(t, 10*time.Second), 1, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
}

// sealed waits out segment.ms and produces one record with a key of its
// own, so that everything produced before lies in a sealed segment.
func sealed(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	time.Sleep(150 * time.Millisecond)
	produce(t, cl, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint("seal-", time.Now().UnixNano())), Value: []byte("seal")})
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(testkit.Context(t, 20*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// readLog reads partition 0 of topic from the start to its end offset (the
// last stable offset for read_committed) with the isolation level given, and
// returns the records that are not seals. The last record of the partition
// must be a seal: the active segment is never cleaned, so it is still there.
func readLog(t *testing.T, b *brokertest.Broker, topic string, committed bool) []*kgo.Record {
	t.Helper()
	ctx := testkit.Context(t, 20*time.Second)
	ends, err := kadm.NewClient(b.Client(t)).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
		lso, err := kadm.NewClient(b.Client(t, kgo.FetchIsolationLevel(kgo.ReadCommitted()))).ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := lso.Lookup(topic, 0)
		end = l
	}
	cl := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}), kgo.FetchIsolationLevel(iso))
	var out []*kgo.Record
	next := int64(0)
	for next < end.Offset {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s up to %d of %d", topic, next, end.Offset)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch %s: %v", topic, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if !strings.HasPrefix(string(r.Key), "seal-") {
				out = append(out, r)
			}
			next = r.Offset + 1
		})
	}
	return out
}

// waitFor polls until cond holds.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// latestOnly reports whether recs hold exactly one record per key, the one
// want says (key → value; "" for a tombstone, absent for a key that must be
// gone).
func latestOnly(recs []*kgo.Record, want map[string]string) (bool, string) {
	got := map[string][]string{}
	for _, r := range recs {
		v := string(r.Value)
		if r.Value == nil {
			v = "<tombstone>"
		}
		got[string(r.Key)] = append(got[string(r.Key)], v)
	}
	ok := len(got) == len(want)
	for k, v := range want {
		if v == "" {
			v = "<tombstone>"
		}
		ok = ok && len(got[k]) == 1 && got[k][0] == v
	}
	return ok, fmt.Sprint(got)
}

// TestKcatTombstonesOnACompactedTopic: kcat (librdkafka) produces keyed
// values and tombstones (-Z turns an empty value into NULL); after a clean
// kcat sees one record per key, the tombstone included, then, once
// delete.retention.ms has passed, not even the tombstone. A keyless record
// is refused.
func TestKcatTombstonesOnACompactedTopic(t *testing.T) {
	testkit.RequireTool(t, "kcat", "install the Debian package kcat")
	b := compactingBroker(t)
	const topic = "kcat-compacted"
	createCompacted(t, b, topic, "compact", map[string]string{"delete.retention.ms": "2000"})
	kcat(t, "a:1\nb:1\nc:1\na:2\nb:2\n", "-b", b.Addr(), "-P", "-t", topic, "-K", ":", "-Z")
	kcat(t, "b:\na:3\n", "-b", b.Addr(), "-P", "-t", topic, "-K", ":", "-Z")
	sealed(t, b.Client(t), topic)

	consume := func() map[string][]string {
		out := kcat(t, "", "-b", b.Addr(), "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-Z", "-f", `%k=%s\n`)
		got := map[string][]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, _ := strings.Cut(line, "=")
			if !strings.HasPrefix(k, "seal-") && k != "" {
				got[k] = append(got[k], v)
			}
		}
		return got
	}
	waitFor(t, "kcat sees one record per key with b's tombstone", func() (bool, string) {
		got := consume()
		return fmt.Sprint(got) == "map[a:[3] b:[NULL] c:[1]]", fmt.Sprint(got)
	})
	// Past the delete horizon the next clean removes the tombstone.
	waitFor(t, "the tombstone goes after delete.retention.ms", func() (bool, string) {
		got := consume()
		return fmt.Sprint(got) == "map[a:[3] c:[1]]", fmt.Sprint(got)
	})

	// librdkafka reports the broker's refusal of a record without a key.
	out, err := kcatErr("nokey\n", "-b", b.Addr(), "-P", "-t", topic, "-X", "message.send.max.retries=0")
	if err == nil && !strings.Contains(out, "Invalid record") {
		t.Fatalf("kcat produced a keyless record to a compacted topic without error: %s", out)
	}
}

// kcatErr runs kcat and returns its combined output and error.
func kcatErr(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path, err := exec.LookPath("kcat")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestFranzGoCompactionAcrossManySegmentsAndCodecs: franz-go producers with
// each codec write keyed records across dozens of small segments; after
// compaction a consumer reads exactly the latest record per key, at the
// offset it was written at, and the batches kept carry the producer's codec.
// A record without a key is refused with INVALID_RECORD, and DescribeConfigs
// reports cleanup.policy exactly as set.
func TestFranzGoCompactionAcrossManySegmentsAndCodecs(t *testing.T) {
	b := compactingBroker(t)
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	var names []string
	for name := range codecs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			topic := "compact-" + name
			createCompacted(t, b, topic, "compact,delete", map[string]string{"retention.ms": "-1", "segment.bytes": "8192"})
			cl := b.Client(t, kgo.ProducerBatchCompression(codecs[name]), kgo.ProducerLinger(0))
			want := map[string]string{}
			offsets := map[string]int64{}
			for i := range 600 {
				var recs []*kgo.Record
				for j := range 1 + i%4 {
					k := fmt.Sprintf("key-%02d", (i*7+j)%40)
					// Long, repetitive values: franz-go sends a batch
					// uncompressed when compressing would not shrink it.
					v := fmt.Sprintf("%s-%d-%d-%s", name, i, j, strings.Repeat("compressible ", 20+i%30))
					recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(k), Value: []byte(v)})
					want[k] = v
				}
				res := cl.ProduceSync(testkit.Context(t, 20*time.Second), recs...)
				if err := res.FirstErr(); err != nil {
					t.Fatal(err)
				}
				for _, r := range res {
					offsets[string(r.Record.Key)] = r.Record.Offset
				}
			}
			sealed(t, cl, topic)
			waitFor(t, "one record per key", func() (bool, string) { return latestOnly(readLog(t, b, topic, false), want) })
			for _, r := range readLog(t, b, topic, false) {
				if r.Offset != offsets[string(r.Key)] {
					t.Fatalf("key %s at offset %d, produced at %d", r.Key, r.Offset, offsets[string(r.Key)])
				}
			}
			checkBatchCodecs(t, b, topic, map[string]int16{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[name])

			err := cl.ProduceSync(testkit.Context(t, 10*time.Second), &kgo.Record{Topic: topic, Value: []byte("no key")}).FirstErr()
			if !errors.Is(err, kerr.InvalidRecord) {
				t.Fatalf("keyless record to a compacted topic: %v, want INVALID_RECORD", err)
			}
			rc, err := kadm.NewClient(cl).DescribeTopicConfigs(testkit.Context(t, 10*time.Second), topic)
			if err != nil {
				t.Fatal(err)
			}
			c, err := rc.On(topic, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, cfg := range c.Configs {
				if cfg.Key == "cleanup.policy" && (cfg.MaybeValue() != "compact,delete" || cfg.Source != kmsg.ConfigSourceDynamicTopicConfig) {
					t.Fatalf("cleanup.policy described as %q (%v)", cfg.MaybeValue(), cfg.Source)
				}
			}
		})
	}
}

// checkBatchCodecs fetches the topic's raw batches: every batch that still
// holds records carries the producer's codec (attributes bits 0-2).
func checkBatchCodecs(t *testing.T, b *brokertest.Broker, topic string, codec int16) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MaxBytes = 100, 50<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 50 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testkit.Context(t, 10*time.Second), b.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	data := resp.Topics[0].Partitions[0].RecordBatches
	withRecords, empty, partial := 0, 0, 0
	for len(data) > 0 {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(data); err != nil {
			t.Fatal(err)
		}
		data = data[12+int(rb.Length):]
		switch {
		case len(data) == 0:
			// The seal: one short record, which franz-go sends uncompressed.
		case rb.NumRecords == 0:
			empty++ // kept for its offsets: Kafka writes these uncompressed too
		case rb.Attributes&7 != codec:
			t.Fatalf("batch at %d has codec %d after compaction, the producer's was %d", rb.FirstOffset, rb.Attributes&7, codec)
		default:
			withRecords++
			if int(rb.NumRecords) < int(rb.LastOffsetDelta)+1 {
				partial++ // records removed from inside: rewritten, recompressed
			}
		}
	}
	if withRecords == 0 || partial == 0 {
		t.Fatalf("%d batches with records, %d of them rewritten with records removed: the test needs both", withRecords, partial)
	}
}

// TestTransactionalProducerWithAbortsIntoACompactedTopic: committed and
// aborted transactions write the same keys; read_committed consumers see
// the latest committed value per key before and after compaction, and
// after it even read_uncommitted consumers see no aborted record.
func TestTransactionalProducerWithAbortsIntoACompactedTopic(t *testing.T) {
	b := compactingBroker(t)
	const topic = "compact-txn"
	createCompacted(t, b, topic, "compact", nil)
	cl := b.Client(t, kgo.TransactionalID("compacting-txn"), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	ctx := testkit.Context(t, 60*time.Second)
	want := map[string]string{}
	for round := range 30 {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		commit := round%3 != 1
		staged := map[string]string{}
		for i := range 5 {
			k := fmt.Sprintf("k%d", (round+i)%8)
			v := fmt.Sprintf("r%d-%d-%v", round, i, commit)
			staged[k] = v
			produce(t, cl, &kgo.Record{Key: []byte(k), Value: []byte(v)})
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		if commit {
			for k, v := range staged {
				want[k] = v
			}
		}
	}
	plain := b.Client(t)
	sealed(t, plain, topic)
	waitFor(t, "read_committed sees the latest committed value per key", func() (bool, string) {
		return latestOnly(readLog(t, b, topic, true), want)
	})
	waitFor(t, "read_uncommitted sees no aborted record once compacted", func() (bool, string) {
		recs := readLog(t, b, topic, false)
		for _, r := range recs {
			if strings.HasSuffix(string(r.Value), "-false") {
				return false, "aborted " + string(r.Value)
			}
		}
		return latestOnly(recs, want)
	})
}

// TestIdempotentProducerKeepsProducingAfterCompactionAndRestart: an
// idempotent producer's batches are all superseded and compacted away but
// its last one, kept empty; the broker restarts with its producer snapshots
// deleted, so its producer state comes from the compacted log alone; the
// producer goes on without OUT_OF_ORDER_SEQUENCE and the broker still knows
// its last sequence.
func TestIdempotentProducerKeepsProducingAfterCompactionAndRestart(t *testing.T) {
	dir := t.TempDir()
	b := compactingBroker(t, broker.WithDataDir(dir))
	const topic = "compact-idempotent"
	createCompacted(t, b, topic, "compact", nil)
	idem := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0), kgo.RecordRetries(20))
	other := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite())
	for i := range 100 {
		produce(t, idem, &kgo.Record{Key: []byte(fmt.Sprint("k", i%5)), Value: []byte(fmt.Sprint("idem-", i))})
	}
	want := map[string]string{}
	for i := range 50 {
		k, v := fmt.Sprint("k", i%5), fmt.Sprint("other-", i)
		produce(t, other, &kgo.Record{Key: []byte(k), Value: []byte(v)})
		want[k] = v
	}
	sealed(t, other, topic)
	waitFor(t, "the idempotent producer's records compacted away", func() (bool, string) {
		return latestOnly(readLog(t, b, topic, false), want)
	})
	pid, seq := describeProducer(t, b, topic, -1)
	if seq != 99 {
		t.Fatalf("before the restart the broker has last sequence %d for producer %d, want 99", seq, pid)
	}
	b.CrashRestart(t, func() []broker.Option {
		snaps, _ := filepath.Glob(filepath.Join(dir, "topics", "*", "*.producers"))
		if len(snaps) == 0 {
			t.Error("no producer snapshot found to delete")
		}
		for _, s := range snaps {
			os.Remove(s)
		}
		return nil
	})
	if _, seq := describeProducer(t, b, topic, pid); seq != 99 {
		t.Fatalf("after a restart from the compacted log the broker has last sequence %d for producer %d, want 99", seq, pid)
	}
	for i := 100; i < 120; i++ {
		produce(t, idem, &kgo.Record{Key: []byte(fmt.Sprint("k", i%5)), Value: []byte(fmt.Sprint("idem-", i))})
	}
	if p2, seq := describeProducer(t, b, topic, pid); p2 != pid || seq != 119 {
		t.Fatalf("producer %d (was %d) at sequence %d after 20 more records, want 119: its state was reset", p2, pid, seq)
	}
}

// describeProducer returns the producer id (pid, or the only one when -1)
// and its last sequence on partition 0, via DescribeProducers.
func describeProducer(t *testing.T, b *brokertest.Broker, topic string, pid int64) (int64, int32) {
	t.Helper()
	var got kadm.DescribedProducersTopics
	waitFor(t, "DescribeProducers answers", func() (bool, string) {
		var err error
		got, err = kadm.NewClient(b.Client(t)).DescribeProducers(testkit.Context(t, 10*time.Second), kadm.TopicsSet{topic: {0: {}}})
		return err == nil, fmt.Sprint(err)
	})
	var ps []kadm.DescribedProducer
	got.EachProducer(func(p kadm.DescribedProducer) {
		if pid < 0 || p.ProducerID == pid {
			ps = append(ps, p)
		}
	})
	if len(ps) != 1 {
		t.Fatalf("DescribeProducers: %+v, want one producer", ps)
	}
	return ps[0].ProducerID, ps[0].LastSequence
}

// TestDeleteRecordsOnACompactOnlyTopicIsAPolicyViolation: as in Kafka, the
// records of a compact-only topic go only by compaction; compact,delete
// topics accept DeleteRecords.
func TestDeleteRecordsOnACompactOnlyTopicIsAPolicyViolation(t *testing.T) {
	b := compactingBroker(t)
	createCompacted(t, b, "compact-only", "compact", nil)
	createCompacted(t, b, "compact-delete", "compact,delete", nil)
	cl := b.Client(t)
	ctx := testkit.Context(t, 30*time.Second)
	for _, topic := range []string{"compact-only", "compact-delete"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	for topic, want := range map[string]error{"compact-only": kerr.PolicyViolation, "compact-delete": nil} {
		o := kadm.Offsets{}
		o.AddOffset(topic, 0, 1, -1)
		res, err := adm.DeleteRecords(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := res.Lookup(topic, 0)
		if !errors.Is(r.Err, want) && r.Err != want {
			t.Errorf("DeleteRecords on %s: %v, want %v", topic, r.Err, want)
		}
	}
}
