package broker_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

func TestClientQuotaAdminRefusesBadEntriesAndDescribesByFilter(t *testing.T) {
	b := brokertest.Run(t)
	adm := kadm.NewClient(b.Client(t))
	ctx := context.Background()
	name := func(s string) *string { return &s }
	entity := func(parts ...kadm.ClientQuotaEntityComponent) kadm.ClientQuotaEntity { return parts }
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{
		{Entity: entity(kadm.ClientQuotaEntityComponent{Type: "group", Name: name("g")}), Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 1}}},
		{Entity: entity(kadm.ClientQuotaEntityComponent{Type: "user", Name: name("u")}), Ops: []kadm.AlterClientQuotaOp{{Key: "connection_creation_rate", Value: 1}}},
		{Entity: entity(kadm.ClientQuotaEntityComponent{Type: "user", Name: name("u")}), Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: -5}}},
		{Entity: entity(kadm.ClientQuotaEntityComponent{Type: "user", Name: name("alice")}), Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 1024}}},
		{Entity: entity(kadm.ClientQuotaEntityComponent{Type: "user"}, kadm.ClientQuotaEntityComponent{Type: "client-id", Name: name("app")}), Ops: []kadm.AlterClientQuotaOp{{Key: "consumer_byte_rate", Value: 2048}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want := error(kerr.InvalidRequest)
		if i >= 3 {
			want = nil
		}
		if !errors.Is(r.Err, want) && !(want == nil && r.Err == nil) {
			t.Errorf("entry %d (%v): %v, want %v", i, r.Entity, r.Err, want)
		}
	}
	all, err := adm.DescribeClientQuotas(ctx, false, nil)
	if err != nil || len(all) != 2 {
		t.Fatalf("all quotas: %+v %v", all, err)
	}
	users, err := adm.DescribeClientQuotas(ctx, true, []kadm.DescribeClientQuotaComponent{{Type: "user", MatchType: 2}})
	if err != nil || len(users) != 1 || *users[0].Entity[0].Name != "alice" {
		t.Errorf("strict, named users only: %+v %v", users, err)
	}
	defaults, err := adm.DescribeClientQuotas(ctx, false, []kadm.DescribeClientQuotaComponent{{Type: "user", MatchType: 1}})
	if err != nil || len(defaults) != 1 || defaults[0].Values[0].Value != 2048 {
		t.Errorf("default user: %+v %v", defaults, err)
	}
	if _, err := adm.DescribeClientQuotas(ctx, false, []kadm.DescribeClientQuotaComponent{{Type: "topic", MatchType: 2}}); !errors.Is(err, kerr.InvalidRequest) {
		t.Errorf("unknown entity type in a filter: %v", err)
	}
}

// TestProducerIsThrottledToItsQuota: a producer with a
// producer_byte_rate quota that sends as fast as it can is held to the
// quota within 10%, measured after the first windows (a new client may
// burst for one window, as in Kafka).
func TestProducerIsThrottledToItsQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("measures throughput for seconds")
	}
	const quota = 512 << 10 // bytes per second
	b := brokertest.Run(t, broker.WithTopics("throttled"),
		broker.WithProperty("quota.window.num", "2"),
		broker.WithProperty("quota.window.size.seconds", "1"))
	adm := kadm.NewClient(b.Client(t))
	ctx := context.Background()
	client := "slow-producer"
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: &client}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: quota}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	cl := b.Client(t, kgo.ClientID(client), kgo.DefaultProduceTopic("throttled"), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(16<<10),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // quotas count bytes on the wire
	var acked atomic.Int64
	value := []byte(strings.Repeat("x", 1024))
	const warmup, measure = 3 * time.Second, 8 * time.Second
	pctx, cancel := context.WithTimeout(ctx, warmup+measure)
	defer cancel()
	start := time.Now()
	var atWarm int64
	warm := time.AfterFunc(warmup, func() { atWarm = acked.Load() })
	defer warm.Stop()
	for pctx.Err() == nil {
		cl.Produce(pctx, &kgo.Record{Value: value}, func(r *kgo.Record, err error) {
			if err == nil {
				acked.Add(int64(len(r.Value)))
			}
		})
	}
	elapsed := time.Since(start) - warmup
	rate := float64(acked.Load()-atWarm) / elapsed.Seconds()
	t.Logf("steady rate %.0f B/s for a quota of %d B/s (%.1f%%)", rate, quota, 100*rate/quota)
	if rate > 1.1*quota || rate < 0.9*quota {
		t.Errorf("throttled producer sent %.0f B/s, want %d ±10%%", rate, quota)
	}
	// An unthrottled client is not slowed.
	fast := b.Client(t, kgo.DefaultProduceTopic("throttled"))
	fstart := time.Now()
	for range 2 {
		if err := fast.ProduceSync(ctx, &kgo.Record{Value: make([]byte, 512<<10)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(fstart); d > 2*time.Second {
		t.Errorf("a client without a quota took %v for 1 MiB", d)
	}
}

// TestConnectionCreationRateQuota: connections from an ip beyond its
// connection_creation_rate are held, then closed unanswered.
func TestConnectionCreationRateQuota(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("quota.window.num", "2"))
	adm := kadm.NewClient(b.Client(t))
	ctx := context.Background()
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "ip"}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "connection_creation_rate", Value: 5}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	// Connect all at once, then ask each; the ones over the rate are
	// closed unanswered. The bound allows for the time the test takes (a
	// slow machine spreads the connections over more windows).
	begin := time.Now()
	conns := make([]net.Conn, 30)
	for i := range conns {
		nc, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conns[i] = nc
		nc.Write(frame(kmsg.NewPtrApiVersionsRequest(), int32(i)))
	}
	answered := 0
	for _, nc := range conns {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(nc, make([]byte, 4)); err == nil {
			answered++
		}
	}
	dialing := time.Since(begin)
	if limit := 5*(int(dialing.Seconds())+2) + 2; answered < 3 || answered > limit || answered == 30 {
		t.Errorf("%d of 30 connections served under a quota of 5 per second (limit %d for %v of dialing)", answered, limit, dialing)
	}
}
