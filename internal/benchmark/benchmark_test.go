package benchmark

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// TestRunSmall runs every workload at a small size against a real broker and
// checks the report accounts for every record.
func TestRunSmall(t *testing.T) {
	b := brokertest.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, Config{
		Brokers: []string{b.Addr()}, Records100: 5000, Records1K: 1000,
		Rates: []int{500}, LatencyDuration: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Throughput) != 6 {
		t.Fatalf("want 6 throughput runs (2 sizes × acks all/1 + 2 consumes), got %d", len(rep.Throughput))
	}
	for _, tp := range rep.Throughput {
		if tp.MsgsPerS <= 0 || tp.Records == 0 {
			t.Errorf("%s: empty measurement %+v", tp.Name, tp)
		}
		if strings.HasPrefix(tp.Name, "consume 100B") && tp.Bytes != 5000*100 {
			t.Errorf("consume read %d bytes, want %d", tp.Bytes, 5000*100)
		}
	}
	if len(rep.Latency) != 1 || rep.Latency[0].Records != 500 || rep.Latency[0].P50Ms <= 0 {
		t.Fatalf("latency run: %+v", rep.Latency)
	}
	var out bytes.Buffer
	Format(&out, rep)
	if !strings.Contains(out.String(), "produce 100B acks=all") {
		t.Fatalf("table lacks the acks=all row:\n%s", out.String())
	}
}

// TestShareRunSmall runs the share-group workloads at a small size: both
// groups consume every record, and the lock-expiry redelivery comes about
// one lock duration after the acquisition.
func TestShareRunSmall(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("group.share.min.record.lock.duration.ms", "1000"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, Config{Brokers: []string{b.Addr()}, ShareRecords: 5000, ShareConsumers: 2})
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Share
	if s == nil || s.Share.Records != 5000 || s.Share.Bytes != 5000*100 || s.Classic.Bytes < 5000*100 || s.Ratio <= 0 {
		t.Fatalf("share report %+v", s)
	}
	if s.LockMs != 1000 || s.RedeliveryMs < 900 || s.RedeliveryMs > 1000+200 {
		t.Errorf("redelivered after %.0f ms with a %d ms lock", s.RedeliveryMs, s.LockMs)
	}
	var out bytes.Buffer
	Format(&out, rep)
	if !strings.Contains(out.String(), "share / classic") {
		t.Fatalf("table lacks the share rows:\n%s", out.String())
	}
}

// TestLatencyWithRequestsInFlight runs a latency run with a non-idempotent
// producer keeping several requests in flight: every record still arrives,
// the row says how many requests were in flight, and a bound outside 0–100
// is refused before anything runs.
func TestLatencyWithRequestsInFlight(t *testing.T) {
	b := brokertest.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, Config{Brokers: []string{b.Addr()}, Rates: []int{500}, LatencyDuration: time.Second, LatencyInFlight: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Latency) != 1 || rep.Latency[0].Records != 500 || rep.Latency[0].InFlight != 5 {
		t.Fatalf("latency run: %+v", rep.Latency)
	}
	var out bytes.Buffer
	Format(&out, rep)
	if !strings.Contains(out.String(), "500 msg/s, 5 in flight") {
		t.Fatalf("table does not name the requests in flight:\n%s", out.String())
	}
	if _, err := Run(ctx, Config{Brokers: []string{b.Addr()}, LatencyInFlight: -1}); err == nil || !strings.Contains(err.Error(), "in-flight") {
		t.Fatalf("a negative in-flight bound: err %v, want a refusal naming it", err)
	}
}
