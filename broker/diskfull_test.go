package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// TestFullDisk is the operator's view of a full disk (issue 9, defect 3):
// producers get a retriable KAFKA_STORAGE_ERROR and nothing acknowledged is
// lost; health and metrics say so; a transaction still commits (its markers
// draw on the disk reserve) so read_committed consumers are not stalled;
// topics can still be created and deleted through Kafka's API; the broker
// restarts on the full disk; and producing resumes by itself once space
// returns.
func TestFullDisk(t *testing.T) {
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, brokerkit.WithFS(mem), broker.WithDataDir("/data"), broker.WithTopics("fill", "other"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A transaction left open across the disk filling up.
	txnl := b.Client(t, kgo.TransactionalID("fill-txn"), kgo.DefaultProduceTopic("other"))
	if err := txnl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txnl.ProduceSync(ctx, &kgo.Record{Value: []byte("txn-before-full")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// More than the reserve (256 KiB in tests) and a chunk: deleting the
	// filled topic at the end must free what the drawn-on reserve needs
	// before records are taken again, also after the restart.
	mem.SetCapacity(mem.UsedBytes() + 640<<10)
	acked := 0
	for {
		c := produceCode(t, b.Addr(), "fill", 0)
		if c == 0 {
			acked++
			continue
		}
		if c != kerr.KafkaStorageError.Code {
			t.Fatalf("produce on a full disk answered %v, want KAFKA_STORAGE_ERROR (retriable)", kerr.ErrorForCode(c))
		}
		break
	}
	if status, body := healthzOf(t, b.AdminAddr()); status != 503 || !strings.Contains(body, "disk full") {
		t.Fatalf("healthz on a full disk: %d %q", status, body)
	}
	if m := metricsOf(t, b.AdminAddr()); !strings.Contains(m, "idem_disk_full 1") {
		t.Fatalf("metrics on a full disk:\n%s", grepLines(m, "idem_disk"))
	}

	// The open transaction commits: its marker goes to the reserve.
	if err := txnl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit on a full disk: %v", err)
	}
	rc := b.Client(t, kgo.ConsumeTopics("other"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if fs := rc.PollFetches(ctx); fs.NumRecords() != 1 {
		t.Fatalf("read_committed after a commit on a full disk: %d records, errors %v", fs.NumRecords(), fs.Errors())
	}

	// Topics can be created and deleted through Kafka's API.
	adm := kadm.NewClient(b.Client(t))
	if r, err := adm.CreateTopic(ctx, 1, 1, nil, "made-while-full"); err != nil || r.Err != nil {
		t.Fatalf("create topic on a full disk: %v %v", err, r.Err)
	}
	// A restart on the full disk works and keeps every acknowledged record.
	b.Restart(t)
	cl := b.Client(t, kgo.ConsumeTopics("fill"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for got < acked {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d acknowledged records after a restart on a full disk", got, acked)
		}
		got += fs.NumRecords()
	}
	// Deleting a topic frees its space, and producing resumes.
	if r, err := adm.DeleteTopic(ctx, "fill"); err != nil || r.Err != nil {
		t.Fatalf("delete topic on a full disk: %v %v", err, r.Err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for produceCode(t, b.Addr(), "other", 0) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("producing did not resume after space was freed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRecordsDoNotEatTheDiskReserve: once the disk is full, records are
// refused until space is freed, even when a metadata write has drawn on the
// reserve and so freed a chunk: that chunk is for metadata. (The soak found
// producers acknowledged into it, draining the reserve a chunk at a time.)
func TestRecordsDoNotEatTheDiskReserve(t *testing.T) {
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, brokerkit.WithFS(mem), broker.WithDataDir("/data"), broker.WithTopics("fill"),
		broker.WithProperty("idem.disk.reserve.bytes", "4194304"))
	if c := produceCode(t, b.Addr(), "fill", 0); c != 0 {
		t.Fatalf("first produce: %v", kerr.ErrorForCode(c))
	}
	mem.SetCapacity(mem.UsedBytes()) // the disk is full
	if c := produceCode(t, b.Addr(), "fill", 0); c != kerr.KafkaStorageError.Code {
		t.Fatalf("produce on the full disk: %v", kerr.ErrorForCode(c))
	}
	// An offset commit is metadata: it draws a chunk of the reserve.
	adm := kadm.NewClient(b.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := adm.CommitAllOffsets(ctx, "g", kadm.OffsetsFromRecords(kgo.Record{Topic: "fill", Partition: 0, Offset: 1})); err != nil {
		t.Fatalf("offset commit on a full disk: %v", err)
	}
	acked := 0
	for range 200 {
		if produceCode(t, b.Addr(), "fill", 0) == 0 {
			acked++
		}
	}
	if acked > 0 {
		t.Fatalf("%d records were acknowledged on a full disk, in space the reserve gave back for metadata", acked)
	}
	// Space returns: producing resumes.
	mem.SetCapacity(0)
	if c := produceCode(t, b.Addr(), "fill", 0); c != 0 {
		t.Fatalf("produce after space returned: %v", kerr.ErrorForCode(c))
	}
}
