package broker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// TestAlterTopicConfigs: topic configs change through Kafka's APIs (kadm's
// incremental and whole-set forms), are described back, survive a restart,
// and take effect on the open partitions at once: a smaller retention.ms
// empties the log at the next retention pass.
func TestAlterTopicConfigs(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("t"), broker.WithProperty("log.retention.check.interval.ms", "200"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := b.Client(t, kgo.DefaultProduceTopic("t"))
	adm := kadm.NewClient(cl)
	describe := func(name string) (string, bool) {
		t.Helper()
		rcs, err := adm.DescribeTopicConfigs(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rcs[0].Configs {
			if c.Key == name && c.Value != nil && c.Source == kmsg.ConfigSourceDynamicTopicConfig {
				return *c.Value, true
			}
		}
		return "", false
	}
	ok := func(rs kadm.AlterConfigsResponses, err error) {
		t.Helper()
		if err == nil {
			err = rs[0].Err
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ok(adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "segment.bytes", Value: kadm.StringPtr("1048576")},
		{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact")},
	}, "t"))
	if v, _ := describe("cleanup.policy"); v != "delete,compact" {
		t.Fatalf("cleanup.policy after APPEND: %q", v)
	}
	// An invalid value changes nothing.
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.bytes", Value: kadm.StringPtr("soon")}}, "t")
	if err == nil && rs[0].Err == nil {
		t.Fatal("segment.bytes=soon accepted")
	}
	if !errors.Is(rs[0].Err, kerr.InvalidConfig) {
		t.Fatalf("segment.bytes=soon: %v", rs[0].Err)
	}
	if v, _ := describe("segment.bytes"); v != "1048576" {
		t.Fatalf("segment.bytes after a refused change: %q", v)
	}
	b.Restart(t)
	cl = b.Client(t, kgo.DefaultProduceTopic("t"))
	adm = kadm.NewClient(cl)
	if v, _ := describe("segment.bytes"); v != "1048576" {
		t.Fatalf("segment.bytes after a restart: %q", v)
	}
	// The whole-set form replaces: cleanup.policy reverts to the default.
	ok(adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("1")}}, "t"))
	if _, set := describe("cleanup.policy"); set {
		t.Fatal("AlterConfigs kept a config it did not name")
	}
	// retention.ms=1 takes effect on the open partition.
	for range 3 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord("old")).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ok(adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.ms", Value: kadm.StringPtr("1")}}, "t"))
	time.Sleep(10 * time.Millisecond)
	if err := cl.ProduceSync(ctx, kgo.StringRecord("rolls the segment")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		starts, err := adm.ListStartOffsets(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := starts.Lookup("t", 0); o.Offset >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention.ms=1 never removed the old records")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
