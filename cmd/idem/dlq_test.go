package main

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// deadLetters fills dlq.orders: a share consumer rejects keys 0..5 of ten
// records spread over two partitions of orders.
func deadLetters(t *testing.T) (*brokertest.Broker, *kgo.Client) {
	t.Helper()
	b := brokertest.Run(t, broker.WithProperty("errors.deadletterqueue.auto.create.topics.enable", "true"))
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, "billing"
	for _, kv := range [][2]string{{"share.auto.offset.reset", "earliest"}, {"errors.deadletterqueue.topic.name", "dlq.orders"}} {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = kv[0], kmsg.StringPtr(kv[1])
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	if resp, err := req.RequestWith(ctx, cl); err != nil || resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("group configs: %v %v", resp, err)
	}
	for i := range 10 {
		r := &kgo.Record{Topic: "orders", Partition: int32(i % 2), Key: []byte(strconv.Itoa(i)), Value: []byte("order-" + strconv.Itoa(i)),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t" + strconv.Itoa(i))}}}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c := b.Client(t, kgo.ShareGroup("billing"), kgo.ConsumeTopics("orders"), kgo.FetchMaxWait(200*time.Millisecond))
	seen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < 10 && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		c.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			k, _ := strconv.Atoi(string(r.Key))
			if k <= 5 {
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
		ends, err := adm.ListEndOffsets(ctx, "dlq.orders")
		var n int64
		if err == nil {
			ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		}
		if n == 6 {
			return b, cl
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the dead-letter topic never got its six records")
	return nil, nil
}

// redriven counts, per key, the records of orders that redrive wrote.
func redriven(t *testing.T, cl *kgo.Client) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := readAll(context.Background(), cl, kadm.NewClient(cl), "orders", func(r *kgo.Record) {
		for _, h := range r.Headers {
			if h.Key == redriveHeader {
				out[string(r.Key)]++
				k, _ := strconv.Atoi(string(r.Key))
				if r.Partition != int32(k%2) {
					t.Errorf("key %s redriven to partition %d, its source was %d", r.Key, r.Partition, k%2)
				}
				if string(r.Value) != "order-"+string(r.Key) {
					t.Errorf("key %s redriven with value %q", r.Key, r.Value)
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRedriveIsIdempotent: a run killed after its first batch, a run that
// finishes it, and a third run together move every dead letter back to its
// source partition exactly once.
func TestRedriveIsIdempotent(t *testing.T) {
	_, cl := deadLetters(t)
	ctx := context.Background()
	o := redriveOptions{dlq: "dlq.orders", batch: 2, crashAfter: 1}
	if _, err := redrive(ctx, cl, o); !errors.Is(err, errSimulatedCrash) {
		t.Fatalf("first run: %v", err)
	}
	if got := redriven(t, cl); len(got) != 2 {
		t.Fatalf("after the killed run %d records were moved, want its first batch of 2: %v", len(got), got)
	}
	o.crashAfter = 0
	res, err := redrive(ctx, cl, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.recovered != 2 || res.redriven != 4 || res.already != 2 {
		t.Errorf("second run: %+v, want 2 recovered (so already redriven) and 4 redriven", res)
	}
	res, err = redrive(ctx, cl, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.redriven != 0 || res.already != 6 {
		t.Errorf("third run: %+v, want nothing moved and 6 already redriven", res)
	}
	got := redriven(t, cl)
	for k := range 6 {
		if n := got[strconv.Itoa(k)]; n != 1 {
			t.Errorf("key %d redriven %d times", k, n)
		}
	}
	if len(got) != 6 {
		t.Errorf("redriven keys %v", got)
	}
}

// TestRedriveFilters: --group, --header and --to select and direct what
// moves; records filtered out stay for a later run.
func TestRedriveFilters(t *testing.T) {
	_, cl := deadLetters(t)
	ctx := context.Background()
	adm := kadm.NewClient(cl)
	if resp, err := adm.CreateTopic(ctx, 1, 1, nil, "orders-retry"); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	res, err := redrive(ctx, cl, redriveOptions{dlq: "dlq.orders", group: "someone-else"})
	if err != nil || res.redriven != 0 || res.filtered != 6 {
		t.Fatalf("other group: %+v %v", res, err)
	}
	res, err = redrive(ctx, cl, redriveOptions{dlq: "dlq.orders", to: "orders-retry", headers: map[string]string{"__dlq.errors.offset": "0"}})
	if err != nil || res.redriven != 2 || res.filtered != 4 {
		t.Fatalf("offset 0 of both partitions to orders-retry: %+v %v", res, err)
	}
	var moved []string
	if err := readAll(ctx, cl, adm, "orders-retry", func(r *kgo.Record) { moved = append(moved, string(r.Key)) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(moved, ",") != "0,1" && strings.Join(moved, ",") != "1,0" {
		t.Errorf("orders-retry holds %v, want keys 0 and 1", moved)
	}
	res, err = redrive(ctx, cl, redriveOptions{dlq: "dlq.orders", dryRun: true})
	if err != nil || res.redriven != 4 || res.already != 2 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
}

// TestShareAndDLQCommands runs `idem share list|describe` and `idem dlq
// list` against a broker.
func TestShareAndDLQCommands(t *testing.T) {
	b, _ := deadLetters(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--brokers", b.Addr()))
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	if out := run("share", "list"); !strings.Contains(out, "billing") || !strings.Contains(out, "Empty") {
		t.Errorf("share list:\n%s", out)
	}
	out := run("share", "describe", "billing", "--admin-url", b.AdminURL())
	for _, want := range []string{"GROUP      billing", "orders  0", "orders  1"} {
		if !strings.Contains(out, want) {
			t.Errorf("share describe lacks %q:\n%s", want, out)
		}
	}
	if out := run("dlq", "list"); !strings.Contains(out, "dlq.orders  1           6") {
		t.Errorf("dlq list:\n%s", out)
	}
	out = run("dlq", "list", "dlq.orders")
	if n := strings.Count(out, "rejected by the consumer"); n != 6 || !strings.Contains(out, "billing") {
		t.Errorf("dlq list dlq.orders (%d rejected):\n%s", n, out)
	}
	if out := run("dlq", "redrive", "dlq.orders"); !strings.Contains(out, "redriven 6;") {
		t.Errorf("dlq redrive:\n%s", out)
	}
	if out := run("dlq", "list", "dlq.orders"); strings.Count(out, "true") != 6 {
		t.Errorf("dlq list after redrive:\n%s", out)
	}
}
