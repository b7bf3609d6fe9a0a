package brokerkit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/verify"
)

func TestMain(m *testing.M) { testkit.Main(m, ChildRole) }

func TestChildBrokerServesUntilSIGTERMAndRestartsOnItsData(t *testing.T) {
	addr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p := Child{Addr: addr, DataDir: t.TempDir(), Quiet: true, Properties: map[string]string{"num.partitions": "2"}}.Process(nil)
	t.Cleanup(func() { _ = p.Kill() })
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("t"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testkit.Context(t, 30*time.Second)
	r, err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).First()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ends, err := verify.Drain(ctx, []string{addr}, "t")
	if err != nil || len(ends) != 1 || ends[0].Value != "v" || ends[0].Partition != r.Partition {
		t.Fatalf("after kill -9 and restart read %v, %v; want the one record written", ends, err)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("SIGTERM did not end the child broker cleanly: %v", err)
	}
}

func TestCrashRestartKeepsOnlyWhatAPowerLossKeeps(t *testing.T) {
	mem := logstore.NewMemFS()
	b := brokertest.Run(t, WithFS(mem), broker.WithDataDir("/data"), broker.WithTopics("t"))
	cl := b.Client(t, kgo.DefaultProduceTopic("t"))
	ctx := testkit.Context(t, 30*time.Second)
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("acked")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	after := CrashRestart(t, b, mem, true)
	if after == mem || after == nil {
		t.Fatal("CrashRestart did not return the file system the broker restarted on")
	}
	recs, err := verify.Drain(ctx, []string{b.Addr()}, "t")
	if err != nil || len(recs) != 1 || recs[0].Value != "acked" {
		t.Fatalf("after a power loss read %v, %v; want the acknowledged record", recs, err)
	}
}

// A MemBroker keeps what it acknowledged across power losses and kills,
// refuses records while its disk is full, and restarts on a full disk.
func TestMemBrokerCrashesFillsAndRestartsOnItsFullDisk(t *testing.T) {
	m, err := StartMemBroker(1, broker.WithTopics("t"), broker.WithProperty("idem.disk.reserve.bytes", "262144"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	ctx := testkit.Context(t, 60*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(m.Addr()), kgo.DefaultProduceTopic("t"), kgo.RecordDeliveryTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := []string{}
	produce := func(v string) error {
		err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr()
		if err == nil {
			want = append(want, v)
		}
		return err
	}
	if err := produce("before"); err != nil {
		t.Fatal(err)
	}
	addr := m.Addr()
	if err := m.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	if m.Running() {
		t.Fatal("running after a power loss, before the restart")
	}
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Addr() != addr {
		t.Fatalf("restarted at %s, not %s", m.Addr(), addr)
	}
	if err := produce("after-power-loss"); err != nil {
		t.Fatal(err)
	}
	what, err := m.Disk().Fill()
	if err != nil {
		t.Fatal(err)
	}
	t.Log(what)
	if err := produce("while-full"); err == nil {
		t.Fatal("a record was acknowledged on a full disk")
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(ctx); err != nil {
		t.Fatalf("restart on a full disk: %v", err)
	}
	// The restart drew on the disk reserve for its checkpoints; what the
	// draw freed beyond them may take records, so none is asserted here.
	_ = produce("after-restart-on-full-disk")
	if _, err := m.Disk().Free(); err != nil {
		t.Fatal(err)
	}
	if err := produce("freed"); err != nil {
		t.Fatalf("after the free: %v", err)
	}
	if l, k := m.Crashes(); l != 1 || k != 1 {
		t.Fatalf("crashes: %d power losses, %d kills", l, k)
	}
	recs, err := verify.Drain(ctx, []string{m.Addr()}, "t")
	var got []string
	for _, r := range recs {
		got = append(got, r.Value)
	}
	if err != nil {
		t.Fatal(err)
	}
	SameSet(t, "records after two crashes and a full disk", got, want)
	dir := t.TempDir()
	if err := m.Dump(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "topics")); err != nil {
		t.Fatalf("dump lacks the topics: %v", err)
	}
}
