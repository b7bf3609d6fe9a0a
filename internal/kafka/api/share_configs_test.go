package api_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
)

func describeConfigs(t *testing.T, cl *kgo.Client, typ kmsg.ConfigResourceType, name string, names ...string) map[string]kmsg.DescribeConfigsResponseResourceConfig {
	t.Helper()
	req := kmsg.NewPtrDescribeConfigsRequest()
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType, r.ResourceName, r.ConfigNames = typ, name, names
	req.Resources = append(req.Resources, r)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil || resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("DescribeConfigs %v %s: %v %v", typ, name, err, resp)
	}
	out := map[string]kmsg.DescribeConfigsResponseResourceConfig{}
	for _, c := range resp.Resources[0].Configs {
		out[c.Name] = c
	}
	return out
}

func incrementalAlter(t *testing.T, cl *kgo.Client, typ kmsg.ConfigResourceType, name string, ops ...kmsg.IncrementalAlterConfigsRequestResourceConfig) (int16, string) {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	r := kmsg.NewIncrementalAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName, r.Configs = typ, name, ops
	req.Resources = append(req.Resources, r)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Resources[0].ErrorCode, deref(resp.Resources[0].ErrorMessage)
}

func op(name string, o kmsg.IncrementalAlterConfigOp, value *string) kmsg.IncrementalAlterConfigsRequestResourceConfig {
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Op, c.Value = name, o, value
	return c
}

// TestShareConfigsAreDynamicAndDurable: group and broker configs set with
// IncrementalAlterConfigs and AlterConfigs are validated, read back with
// DescribeConfigs (with their source), take effect at once and survive a
// restart; invalid ones change nothing.
func TestShareConfigsAreDynamicAndDurable(t *testing.T) {
	b := shareBroker(t, broker.WithDataDir(t.TempDir()))
	cl := b.Client(t)
	group := kmsg.ConfigResourceTypeGroupConfig
	brokerRes := kmsg.ConfigResourceTypeBroker
	// Invalid values and names: INVALID_CONFIG, nothing set.
	for _, bad := range []kmsg.IncrementalAlterConfigsRequestResourceConfig{
		op("share.delivery.count.limit", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("1")),
		op("share.record.lock.duration.ms", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("999999")),
		op("share.auto.offset.reset", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("sometimes")),
		op("no.such.config", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("1")),
		op("share.delivery.count.limit", kmsg.IncrementalAlterConfigOpAppend, kmsg.StringPtr("3")),
		op("errors.deadletterqueue.topic.name", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("not-prefixed")),
	} {
		// A valid change beside the bad one is not applied either.
		if code, msg := incrementalAlter(t, cl, group, "g", op("share.isolation.level", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("read_committed")), bad); code != kerr.InvalidConfig.Code {
			t.Errorf("%s %v=%v: %s (%s)", bad.Name, bad.Op, deref(bad.Value), codeName(code), msg)
		}
	}
	if c := describeConfigs(t, cl, group, "g", "share.isolation.level")["share.isolation.level"]; deref(c.Value) != "read_uncommitted" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Errorf("after refused changes: %s from %v", deref(c.Value), c.Source)
	}
	// Valid ones.
	if code, msg := incrementalAlter(t, cl, group, "g",
		op("share.auto.offset.reset", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("by_duration:PT1H")),
		op("share.delivery.count.limit", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("7")),
		op("idem.share.release.backoff.ms", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("500"))); code != 0 {
		t.Fatalf("set: %s %s", codeName(code), msg)
	}
	if code, _ := incrementalAlter(t, cl, group, "g", op("idem.share.release.backoff.ms", kmsg.IncrementalAlterConfigOpDelete, nil)); code != 0 {
		t.Fatalf("delete: %s", codeName(code))
	}
	// Broker: a dynamic property changes at once; a static one is refused.
	if code, msg := incrementalAlter(t, cl, brokerRes, "", op("group.share.delivery.count.limit", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("8"))); code != 0 {
		t.Fatalf("broker set: %s %s", codeName(code), msg)
	}
	if code, _ := incrementalAlter(t, cl, brokerRes, "1", op("log.dirs", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("/elsewhere"))); code != kerr.InvalidConfig.Code {
		t.Errorf("a static broker property altered: %s", codeName(code))
	}
	check := func(when string) {
		t.Helper()
		g := describeConfigs(t, cl, group, "g")
		for name, want := range map[string]string{"share.auto.offset.reset": "by_duration:PT1H", "share.delivery.count.limit": "7"} {
			if c := g[name]; deref(c.Value) != want || c.Source != kmsg.ConfigSourceGroupConfig {
				t.Errorf("%s: %s = %s from %v, want %s from GROUP_CONFIG", when, name, deref(c.Value), c.Source, want)
			}
		}
		if c := g["idem.share.release.backoff.ms"]; deref(c.Value) != "0" || c.Source != kmsg.ConfigSourceDefaultConfig {
			t.Errorf("%s: deleted config reads %s from %v", when, deref(c.Value), c.Source)
		}
		// A group that sets nothing reads the broker's dynamic default.
		if c := describeConfigs(t, cl, group, "other", "share.delivery.count.limit")["share.delivery.count.limit"]; deref(c.Value) != "8" {
			t.Errorf("%s: another group's limit %s, want the broker's dynamic 8", when, deref(c.Value))
		}
		bc := describeConfigs(t, cl, brokerRes, "", "group.share.delivery.count.limit", "log.dirs")
		if c := bc["group.share.delivery.count.limit"]; deref(c.Value) != "8" || c.Source != kmsg.ConfigSourceDynamicDefaultBrokerConfig || c.ReadOnly {
			t.Errorf("%s: broker limit %s from %v (read-only %v)", when, deref(c.Value), c.Source, c.ReadOnly)
		}
		if !bc["log.dirs"].ReadOnly {
			t.Errorf("%s: log.dirs is not read-only", when)
		}
	}
	check("before the restart")
	b.Restart(t)
	cl = b.Client(t)
	check("after a restart")
	// AlterConfigs replaces a resource's configs: what it leaves out reverts.
	req := kmsg.NewPtrAlterConfigsRequest()
	r := kmsg.NewAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName = group, "g"
	c := kmsg.NewAlterConfigsRequestResourceConfig()
	c.Name, c.Value = "share.record.lock.duration.ms", kmsg.StringPtr("20000")
	r.Configs = append(r.Configs, c)
	req.Resources = append(req.Resources, r)
	if resp, err := req.RequestWith(context.Background(), cl); err != nil || resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("AlterConfigs: %v %v", resp, err)
	}
	g := describeConfigs(t, cl, group, "g")
	if deref(g["share.record.lock.duration.ms"].Value) != "20000" || deref(g["share.auto.offset.reset"].Value) != "latest" {
		t.Errorf("after AlterConfigs: lock %s, reset %s", deref(g["share.record.lock.duration.ms"].Value), deref(g["share.auto.offset.reset"].Value))
	}
	// ListGroups does not list a group that only has configs.
	if listed, err := kadm.NewClient(cl).ListGroupsByType(context.Background(), []string{"share"}); err != nil || len(listed) != 0 {
		t.Errorf("listed %v %v", listed, err)
	}
}
