// Package dlqtest fills a share group's dead-letter topic for the tests of
// the packages that show and redrive dead letters (internal/dlq, the admin
// API and console, the CLI).
package dlqtest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker/brokertest"
)

// SetGroupConfigs sets configs of a group (GROUP resource) with
// IncrementalAlterConfigs; kadm has no call for it.
func SetGroupConfigs(t testing.TB, cl *kgo.Client, group string, configs map[string]string) {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	for k, v := range configs {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(brokertest.Ctx(t), cl)
	if err != nil {
		t.Fatalf("group %s configs: %v", group, err)
	}
	if code := resp.Resources[0].ErrorCode; code != 0 {
		t.Fatalf("group %s configs: error code %d", group, code)
	}
}

// Fill creates topic with two partitions and n records (key i, value
// "<topic>-i", header trace=t<i>, partition i%2), gives share group the
// dead-letter topic dlqTopic, and runs a share consumer of the group that
// rejects keys below reject and accepts the others; it returns when
// dlqTopic holds the reject dead letters. The broker must auto-create
// dead-letter topics (errors.deadletterqueue.auto.create.topics.enable).
func Fill(t testing.TB, b *brokertest.Broker, topic, group, dlqTopic string, n, reject int) {
	t.Helper()
	ctx := brokertest.Ctx(t)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	if resp, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, resp.Err)
	}
	SetGroupConfigs(t, cl, group, map[string]string{
		"share.auto.offset.reset":           "earliest",
		"errors.deadletterqueue.topic.name": dlqTopic,
	})
	for i := range n {
		r := &kgo.Record{Topic: topic, Partition: int32(i % 2), Key: []byte(strconv.Itoa(i)), Value: []byte(topic + "-" + strconv.Itoa(i)),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t" + strconv.Itoa(i))}}}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c := b.Client(t, kgo.ShareGroup(group), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(200*time.Millisecond))
	seen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		c.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			k, _ := strconv.Atoi(string(r.Key))
			if k < reject {
				r.Ack(kgo.AckReject)
			} else {
				r.Ack(kgo.AckAccept)
			}
			seen[string(r.Key)] = true
		})
		cancel()
	}
	if err := c.FlushAcks(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for time.Now().Before(deadline) {
		ends, err := adm.ListEndOffsets(ctx, dlqTopic)
		var got int64
		if err == nil {
			ends.Each(func(o kadm.ListedOffset) { got += o.Offset })
		}
		if got == int64(reject) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the dead-letter topic %s never got its %d records", dlqTopic, reject)
}
