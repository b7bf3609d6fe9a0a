package brokerkit

import (
	"context"
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
