package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/admin/api"
	"github.com/idem-dev/idem/internal/dlq"
	"github.com/idem-dev/idem/internal/dlq/dlqtest"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// deadLetterBroker is a broker whose share group billing rejected keys
// 0..5 of ten records of orders (two partitions) into dlq.orders.
func deadLetterBroker(t *testing.T) *brokertest.Broker {
	t.Helper()
	b := brokertest.Run(t, broker.WithProperty("errors.deadletterqueue.auto.create.topics.enable", "true"))
	dlqtest.Fill(t, b, "orders", "billing", "dlq.orders", 10, 6)
	return b
}

// redrivenKeys reads topic with kgo and counts, per key, the records a
// redrive put there (those with the __idem.redrive.from header).
func redrivenKeys(t *testing.T, b *brokertest.Broker, topic string) map[string]int {
	t.Helper()
	cl := b.Client(t)
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	offsets := map[int32]kgo.Offset{}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			offsets[o.Partition] = kgo.NewOffset().AtStart()
			left[o.Partition] = o.Offset
		}
	})
	out := map[string]int{}
	if len(offsets) == 0 {
		return out
	}
	rd := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	deadline := time.Now().Add(20 * time.Second)
	for len(left) > 0 && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx(t), time.Second)
		rd.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == dlq.RedriveHeader {
					out[string(r.Key)]++
				}
			}
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		})
		cancel()
	}
	if len(left) > 0 {
		t.Fatalf("%s: could not read to the end offsets", topic)
	}
	return out
}

func TestDeadLettersAreListedAndPaged(t *testing.T) {
	b := deadLetterBroker(t)
	c := newClient(t, b)

	var topics []dlq.Topic
	c.must(http.StatusOK, "GET", "/v1/dead-letters", nil, &topics)
	if len(topics) != 1 || topics[0].Name != "dlq.orders" || !topics[0].Exists || topics[0].Records != 6 ||
		len(topics[0].Groups) != 1 || topics[0].Groups[0] != "billing" {
		t.Fatalf("dead-letter topics: %+v", topics)
	}

	var first, second dlq.Page
	c.must(http.StatusOK, "GET", "/v1/dead-letters/dlq.orders/records?limit=4", nil, &first)
	if len(first.Records) != 4 || first.Next == nil {
		t.Fatalf("first page: %d records, next %+v", len(first.Records), first.Next)
	}
	c.must(http.StatusOK, "GET", "/v1/dead-letters/dlq.orders/records?limit=4&partition="+
		strconv.Itoa(int(first.Next.Partition))+"&offset="+strconv.FormatInt(first.Next.Offset, 10), nil, &second)
	if len(second.Records) != 2 || second.Next != nil {
		t.Fatalf("second page: %d records, next %+v", len(second.Records), second.Next)
	}
	sources := map[string]bool{}
	for _, r := range append(first.Records, second.Records...) {
		k := r.Source.Topic + "/" + strconv.Itoa(int(r.Source.Partition)) + "/" + strconv.FormatInt(r.Source.Offset, 10)
		if sources[k] {
			t.Errorf("%s listed twice", k)
		}
		sources[k] = true
		if r.Source.Topic != "orders" || r.Group != "billing" || r.DeliveryCount != 1 || r.Reason != "rejected by the consumer" ||
			r.Headers["__dlq.errors.delivery.count"] != "1" || r.Headers["__dlq.errors.offset"] != strconv.FormatInt(r.Source.Offset, 10) || r.Redriven {
			t.Errorf("record %+v", r)
		}
	}
	if len(sources) != 6 {
		t.Errorf("%d distinct sources, want 6", len(sources))
	}

	for _, q := range []string{"limit=abc", "limit=0", "limit=-1", "partition=0", "offset=3", "partition=x&offset=0", "partition=0&offset=-2"} {
		c.refused(http.StatusBadRequest, "GET", "/v1/dead-letters/dlq.orders/records?"+q, nil)
	}
	c.refused(http.StatusNotFound, "GET", "/v1/dead-letters/dlq.nothing/records", nil)
	if p := c.refused(http.StatusNotFound, "GET", "/v1/dead-letters/orders/records", nil); !strings.Contains(p.Detail, "not a dead-letter topic") {
		t.Errorf("a plain topic: %+v", p)
	}
}

// TestRedriveMovesEachDeadLetterBackOnce: two redrives sent at once either
// both succeed or one answers 409; either way every dead letter is back on
// orders exactly once, and later redrives move nothing.
func TestRedriveMovesEachDeadLetterBackOnce(t *testing.T) {
	b := deadLetterBroker(t)
	c := newClient(t, b)

	c.refused(http.StatusNotFound, "POST", "/v1/dead-letters/dlq.nothing/redrive", nil)
	c.refused(http.StatusNotFound, "POST", "/v1/dead-letters/orders/redrive", nil)
	c.refused(http.StatusBadRequest, "POST", "/v1/dead-letters/dlq.orders/redrive", `{"limit": 0}`)
	c.refused(http.StatusBadRequest, "POST", "/v1/dead-letters/dlq.orders/redrive", `{"limit": "ten"}`)
	c.refused(http.StatusBadRequest, "POST", "/v1/dead-letters/dlq.orders/redrive", `{"target": "nowhere"}`)
	c.refused(http.StatusBadRequest, "POST", "/v1/dead-letters/dlq.orders/redrive", `{"to": "orders"}`)
	if got := redrivenKeys(t, b, "orders"); len(got) != 0 {
		t.Fatalf("refused redrives moved %v", got)
	}

	type answer struct {
		status int
		body   string
	}
	answers := make([]answer, 2)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Post(b.AdminURL()+"/v1/dead-letters/dlq.orders/redrive", "application/json", nil)
			if err != nil {
				answers[i] = answer{0, err.Error()}
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			answers[i] = answer{resp.StatusCode, string(body)}
		})
	}
	wg.Wait()
	moved := 0
	for _, a := range answers {
		switch a.status {
		case http.StatusOK:
			var res api.RedriveResult
			if err := json.Unmarshal([]byte(a.body), &res); err != nil {
				t.Fatal(err)
			}
			moved += res.Redriven
		case http.StatusConflict:
			if !strings.Contains(a.body, "already running") {
				t.Errorf("409 body: %s", a.body)
			}
		default:
			t.Errorf("concurrent redrive: %d %s", a.status, a.body)
		}
	}
	if moved != 6 {
		t.Errorf("the two redrives moved %d in all, want 6: %+v", moved, answers)
	}
	got := redrivenKeys(t, b, "orders")
	for k := range 6 {
		if n := got[strconv.Itoa(k)]; n != 1 {
			t.Errorf("key %d is on orders %d times after redrive, want once", k, n)
		}
	}
	if len(got) != 6 {
		t.Errorf("redriven keys: %v", got)
	}

	var again api.RedriveResult
	c.must(http.StatusOK, "POST", "/v1/dead-letters/dlq.orders/redrive", map[string]any{}, &again)
	if again.Redriven != 0 || again.Already != 6 {
		t.Errorf("a second redrive: %+v, want nothing moved, 6 already", again)
	}
	var page dlq.Page
	c.must(http.StatusOK, "GET", "/v1/dead-letters/dlq.orders/records", nil, &page)
	for _, r := range page.Records {
		if !r.Redriven {
			t.Errorf("record %d/%d not marked redriven", r.Partition, r.Offset)
		}
	}
}

// TestRedriveToAnotherTopicWithALimit: target and limit select where and
// how many; the rest stays for the next call.
func TestRedriveToAnotherTopicWithALimit(t *testing.T) {
	b := deadLetterBroker(t)
	c := newClient(t, b)
	c.must(http.StatusCreated, "POST", "/v1/topics", map[string]any{"name": "orders-retry", "partitions": 1}, nil)
	var res api.RedriveResult
	c.must(http.StatusOK, "POST", "/v1/dead-letters/dlq.orders/redrive", map[string]any{"target": "orders-retry", "limit": 4}, &res)
	if res.Redriven != 4 || res.Left != 2 || res.Target != "orders-retry" {
		t.Fatalf("limit 4: %+v", res)
	}
	c.must(http.StatusOK, "POST", "/v1/dead-letters/dlq.orders/redrive", map[string]any{"target": "orders-retry"}, &res)
	if res.Redriven != 2 || res.Already != 4 {
		t.Fatalf("the rest: %+v", res)
	}
	if got := redrivenKeys(t, b, "orders-retry"); len(got) != 6 {
		t.Errorf("orders-retry holds %v, want the six keys once", got)
	} else {
		for k, n := range got {
			if n != 1 {
				t.Errorf("key %s %d times", k, n)
			}
		}
	}
}

func TestShareGroupDetail(t *testing.T) {
	b := deadLetterBroker(t)
	c := newClient(t, b)
	var g api.ShareGroupDetail
	c.must(http.StatusOK, "GET", "/v1/share-groups/billing", nil, &g)
	if g.Group != "billing" || g.State != "Empty" || len(g.Members) != 0 || len(g.Partitions) != 2 || g.Lag != 0 {
		t.Fatalf("billing: %+v", g)
	}
	for i, p := range g.Partitions {
		if p.Topic != "orders" || p.Partition != int32(i) || p.StartOffset != 5 || p.Lag != 0 {
			t.Errorf("partition %+v, want orders-%d at start offset 5, lag 0", p, i)
		}
	}
	c.refused(http.StatusNotFound, "GET", "/v1/share-groups/nobody", nil)
}

// TestDeadLettersHonourACLs: over a SASL listener with the authorizer, the
// dead-letter endpoints act as the Basic user, their readers included:
// alice, who may only describe the cluster, sees no dead-letter topic and
// is refused the records and the redrive (403); the super user lists them.
func TestDeadLettersHonourACLs(t *testing.T) {
	b := brokertest.Run(t, append(brokerkit.LockedDownBroker(t, "admin", "alice"), broker.WithTopics("orders", "dlq.orders"))...)
	cl := b.Client(t, kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha256Mechanism()))
	if res, err := kadm.NewClient(cl).CreateACLs(ctx(t), kadm.NewACLs().Allow("User:alice").Clusters().Operations(kadm.OpDescribe)); err != nil || res[0].Err != nil {
		t.Fatalf("create ACL: %v %v", err, res)
	}
	// A dead letter as the broker writes it without copying the record.
	dead := &kgo.Record{Topic: "dlq.orders", Headers: []kgo.RecordHeader{
		{Key: "__dlq.errors.topic", Value: []byte("orders")}, {Key: "__dlq.errors.partition", Value: []byte("0")},
		{Key: "__dlq.errors.offset", Value: []byte("0")}, {Key: "__dlq.errors.delivery.count", Value: []byte("3")}}}
	if err := cl.ProduceSync(ctx(t), dead).FirstErr(); err != nil {
		t.Fatal(err)
	}

	alice := newClient(t, b)
	alice.user, alice.pass = "alice", "alice-pw"
	var topics []dlq.Topic
	alice.must(http.StatusOK, "GET", "/v1/dead-letters", nil, &topics)
	if len(topics) != 0 {
		t.Errorf("alice sees dead-letter topics she may not describe: %+v", topics)
	}
	alice.refused(http.StatusForbidden, "GET", "/v1/dead-letters/dlq.orders/records", nil)
	alice.refused(http.StatusForbidden, "POST", "/v1/dead-letters/dlq.orders/redrive", nil)

	admin := newClient(t, b)
	admin.user, admin.pass = "admin", "admin-pw"
	admin.must(http.StatusOK, "GET", "/v1/dead-letters", nil, &topics)
	if len(topics) != 1 || topics[0].Records != 1 {
		t.Errorf("admin's dead-letter topics: %+v", topics)
	}
	var page dlq.Page
	admin.must(http.StatusOK, "GET", "/v1/dead-letters/dlq.orders/records", nil, &page)
	if len(page.Records) != 1 || page.Records[0].DeliveryCount != 3 || page.Records[0].Source.Topic != "orders" {
		t.Errorf("admin's page: %+v", page)
	}
	var res api.RedriveResult
	admin.must(http.StatusOK, "POST", "/v1/dead-letters/dlq.orders/redrive", nil, &res)
	if res.Redriven != 0 || res.Gone != 1 {
		t.Errorf("redrive of a dead letter whose source record never existed: %+v, want it counted gone", res)
	}
}
