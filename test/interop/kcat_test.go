package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kcat links librdkafka 2.0.2 (Debian bookworm), whose feature map enables
// features only when fixed old request versions are advertised, and which
// reads read_committed by default: the strictest of our clients about
// ApiVersions and the last stable offset.
func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	path := testkit.RequireTool(t, "kcat", "install the Debian package kcat")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String()
}

func TestKcatKeysHeadersAndMetadata(t *testing.T) {
	testkit.RequireTool(t, "kcat", "install the Debian package kcat")
	b := startBroker(t)
	const topic = "kcat-orders"
	brokerkit.CreateTopic(t, b, topic, 3)

	var in strings.Builder
	var want []string
	for i := range 30 {
		fmt.Fprintf(&in, "key%d:value%d\n", i%4, i)
		want = append(want, fmt.Sprintf("key%d=value%d;source=kcat,trace=t1", i%4, i))
	}
	kcat(t, in.String(), "-b", b.Addr(), "-P", "-t", topic, "-K", ":",
		"-H", "source=kcat", "-H", "trace=t1", "-X", "enable.idempotence=true")

	out := kcat(t, "", "-b", b.Addr(), "-C", "-t", topic, "-o", "beginning", "-e", "-q",
		"-f", `%k=%s;%h;%p\n`)
	var got []string
	keyPartition := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		i := strings.LastIndex(line, ";")
		if i < 0 {
			t.Fatalf("kcat printed %q, not key=value;headers;partition", line)
		}
		rec, partition := line[:i], line[i+1:]
		got = append(got, rec)
		key, _, _ := strings.Cut(rec, "=")
		if p, ok := keyPartition[key]; ok && p != partition {
			t.Errorf("key %s in partitions %s and %s: keys must hash to one partition", key, p, partition)
		}
		keyPartition[key] = partition
	}
	brokerkit.SameSet(t, "kcat consume of what kcat produced", got, want)
	oneIdempotentProducer(t, readAll(t, b, topic, len(want))) // -X enable.idempotence=true

	// -L -J: the metadata librdkafka sees, as JSON.
	var md struct {
		ControllerID int32 `json:"controllerid"`
		Brokers      []struct {
			ID   int32  `json:"id"`
			Name string `json:"name"`
		} `json:"brokers"`
		Topics []struct {
			Topic      string `json:"topic"`
			Partitions []struct {
				Partition int32 `json:"partition"`
				Leader    int32 `json:"leader"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	mdOut := kcat(t, "", "-b", b.Addr(), "-L", "-J", "-t", topic)
	if err := json.Unmarshal([]byte(mdOut), &md); err != nil {
		t.Fatalf("kcat -L -J output is not JSON: %v\n%s", err, mdOut)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Name != b.Addr() {
		t.Fatalf("brokers %+v, want one at %s", md.Brokers, b.Addr())
	}
	if md.ControllerID != md.Brokers[0].ID {
		t.Errorf("controller %d, want this node %d", md.ControllerID, md.Brokers[0].ID)
	}
	if len(md.Topics) != 1 || md.Topics[0].Topic != topic || len(md.Topics[0].Partitions) != 3 {
		t.Fatalf("topics %+v, want %s with 3 partitions", md.Topics, topic)
	}
	for _, p := range md.Topics[0].Partitions {
		if p.Leader != md.Brokers[0].ID {
			t.Errorf("partition %d led by %d, want %d", p.Partition, p.Leader, md.Brokers[0].ID)
		}
	}
}

func TestKcatOffsetsByTime(t *testing.T) {
	testkit.RequireTool(t, "kcat", "install the Debian package kcat")
	b := startBroker(t)
	const topic = "kcat-times"
	brokerkit.CreateTopic(t, b, topic, 1)

	// Five batches a second apart in record time; each its own batch so that
	// a lookup by time has a batch boundary at every record.
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	cl := b.Client(t, kgo.DefaultProduceTopic(topic))
	for i := range 5 {
		r := &kgo.Record{Value: []byte(fmt.Sprintf("at-%d", i)), Timestamp: t0.Add(time.Duration(i) * time.Second)}
		if err := cl.ProduceSync(testkit.Context(t, 15*time.Second), r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	ts := t0.Add(2 * time.Second).UnixMilli()

	// -o s@TS starts at the first record whose timestamp is at or after TS.
	out := kcat(t, "", "-b", b.Addr(), "-C", "-t", topic, "-p", "0", "-o", fmt.Sprintf("s@%d", ts), "-e", "-q", "-f", `%s@%T\n`)
	var want []string
	for i := 2; i < 5; i++ {
		want = append(want, fmt.Sprintf("at-%d@%d", i, t0.Add(time.Duration(i)*time.Second).UnixMilli()))
	}
	if got := strings.Fields(out); !slices.Equal(got, want) {
		t.Fatalf("kcat -o s@%d read %v, want %v", ts, got, want)
	}

	// -Q asks ListOffsets by timestamp directly.
	q := kcat(t, "", "-b", b.Addr(), "-Q", "-t", fmt.Sprintf("%s:0:%d", topic, ts))
	if !strings.Contains(q, "offset 2") {
		t.Fatalf("kcat -Q for %d answered %q, want offset 2", ts, q)
	}
}

// kcat -G is librdkafka's balanced consumer: JoinGroup/SyncGroup with its
// own assignor, offset commits on close.
func TestKcatBalancedConsumerGroupCommitsWhatItRead(t *testing.T) {
	testkit.RequireTool(t, "kcat", "install the Debian package kcat")
	b := startBroker(t)
	const topic, group = "kcat-group", "kcat-g"
	brokerkit.CreateTopic(t, b, topic, 3)
	var in strings.Builder
	var want []string
	for i := range 20 {
		fmt.Fprintf(&in, "k%d:v%d\n", i, i)
		want = append(want, fmt.Sprintf("v%d", i))
	}
	kcat(t, in.String(), "-b", b.Addr(), "-P", "-t", topic, "-K", ":")

	out := kcat(t, "", "-b", b.Addr(), "-G", group, topic, "-X", "auto.offset.reset=earliest", "-e", "-q", "-f", `%s\n`)
	brokerkit.SameSet(t, "kcat -G", strings.Fields(out), want)
	ends := brokerkit.EndOffsets(t, b, topic)
	got := brokerkit.Committed(t, b, group, topic)
	for p, end := range ends {
		if end > 0 && got[p] != end {
			t.Errorf("partition %d: committed %d, want the end offset %d (all %v)", p, got[p], end, got)
		}
	}
}

// TestKcatCompressesBecauseProduceV0IsAdvertised: librdkafka before 2.11
// compresses with gzip, snappy or lz4 only when the broker's Produce range
// contains v0, and otherwise sends the data uncompressed ("Broker does not
// support compression type"). That is why Produce v0–2 stay advertised,
// refused per partition, as in Kafka 4 (KAFKA-18659).
func TestKcatCompressesBecauseProduceV0IsAdvertised(t *testing.T) {
	testkit.RequireTool(t, "kcat", "install the Debian package kcat")
	b := startBroker(t)
	const topic = "kcat-gzip"
	brokerkit.CreateTopic(t, b, topic, 1)
	value := strings.Repeat("compressible ", 100)
	kcat(t, value+"\n", "-b", b.Addr(), "-P", "-t", topic, "-z", "gzip")

	recs := readAll(t, b, topic, 1)
	if string(recs[0].Value) != value {
		t.Fatalf("read back %q", recs[0].Value)
	}
	req := kmsg.NewPtrFetchRequest()
	req.MaxBytes = 1 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testkit.Context(t, 10*time.Second), b.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	batch := resp.Topics[0].Partitions[0].RecordBatches
	if len(batch) < 61 {
		t.Fatalf("fetched %d bytes, want a record batch", len(batch))
	}
	if codec := binary.BigEndian.Uint16(batch[21:]) & 0x07; codec != 1 {
		t.Fatalf("kcat -z gzip stored a batch with codec %d, want 1 (gzip)", codec)
	}
}
