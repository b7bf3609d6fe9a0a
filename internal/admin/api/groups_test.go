package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/admin/api"
)

// consumeAndCommit runs a group member that consumes n records of topic and
// commits them; it returns the member, still in the group.
func consumeAndCommit(t *testing.T, b *brokertest.Broker, group, topic string, n int) *kgo.Client {
	t.Helper()
	cl := b.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(100*time.Millisecond))
	got := 0
	deadline := time.Now().Add(20 * time.Second)
	for got < n {
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d of %d", got, n)
		}
		fs := cl.PollRecords(ctx(t), n-got)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctx(t)); err != nil {
		t.Fatal(err)
	}
	return cl
}

func produceN(t *testing.T, b *brokertest.Broker, topic string, partition int32, n int) {
	t.Helper()
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range n {
		if err := cl.ProduceSync(ctx(t), &kgo.Record{Topic: topic, Partition: partition, Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGroupsShowLagAndOffsetsAreResetOnlyWhenEmpty(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("orders"), broker.WithProperty("num.partitions", "1"))
	c := newClient(t, b)
	produceN(t, b, "orders", 0, 10)
	member := consumeAndCommit(t, b, "billing", "orders", 10)
	produceN(t, b, "orders", 0, 4) // 4 behind

	var groups []api.GroupSummary
	c.must(http.StatusOK, "GET", "/v1/groups", nil, &groups)
	if len(groups) != 1 || groups[0].Group != "billing" || groups[0].Members != 1 || groups[0].Lag != 4 || groups[0].State != "Stable" {
		t.Fatalf("groups: %+v", groups)
	}
	var g api.GroupDetail
	c.must(http.StatusOK, "GET", "/v1/groups/billing", nil, &g)
	if g.State != "Stable" || g.ProtocolType != "consumer" || len(g.Members) != 1 || g.Lag != 4 {
		t.Fatalf("group: %+v", g)
	}
	if a := g.Members[0].Assignments; len(a) != 1 || a[0].Topic != "orders" || len(a[0].Partitions) != 1 {
		t.Errorf("assignments: %+v", a)
	}
	if len(g.Offsets) != 1 || g.Offsets[0].Committed != 10 || g.Offsets[0].HighWatermark != 14 || g.Offsets[0].Lag != 4 || g.Offsets[0].MemberID == "" {
		t.Fatalf("offsets: %+v", g.Offsets)
	}

	// A group with members refuses a reset, as in Kafka.
	p := c.refused(http.StatusConflict, "POST", "/v1/groups/billing/offsets", map[string]any{"to": "earliest"})
	t.Logf("refused: %s", p.Detail)
	c.refused(http.StatusConflict, "DELETE", "/v1/groups/billing", nil)

	member.Close()
	waitState(t, c, "billing", "Empty")
	for body, want := range map[string]int{
		`{"to": "yesterday"}`:                                      http.StatusBadRequest,
		`{"to": "offset"}`:                                         http.StatusBadRequest,
		`{"to": "offset", "offset": -3}`:                           http.StatusBadRequest,
		`{"to": "timestamp"}`:                                      http.StatusBadRequest,
		`{"to": "earliest", "partitions": [0]}`:                    http.StatusBadRequest,
		`{"to": "earliest", "topic": "orders", "partitions": [5]}`: http.StatusBadRequest,
		`{"to": "earliest", "topic": "missing"}`:                   http.StatusNotFound,
		`{"to": `:                                                  http.StatusBadRequest,
	} {
		c.refused(want, "POST", "/v1/groups/billing/offsets", body)
	}

	adm := kadm.NewClient(b.Client(t))
	committed := func() int64 {
		t.Helper()
		os, err := adm.FetchOffsets(ctx(t), "billing")
		if err != nil {
			t.Fatal(err)
		}
		o, ok := os.Lookup("orders", 0)
		if !ok {
			t.Fatal("no committed offset for orders-0")
		}
		return o.At
	}
	var res api.ResetResult
	c.must(http.StatusOK, "POST", "/v1/groups/billing/offsets", map[string]any{"to": "earliest"}, &res)
	if len(res.Offsets) != 1 || res.Offsets[0].Committed != 0 || committed() != 0 {
		t.Fatalf("to earliest: %+v, broker has %d", res, committed())
	}
	c.must(http.StatusOK, "POST", "/v1/groups/billing/offsets", map[string]any{"to": "offset", "offset": 6}, nil)
	if got := committed(); got != 6 {
		t.Fatalf("to offset 6: broker has %d", got)
	}
	c.must(http.StatusOK, "POST", "/v1/groups/billing/offsets", map[string]any{"to": "offset", "offset": 1000}, nil)
	if got := committed(); got != 14 {
		t.Fatalf("to offset 1000: broker has %d, want it clamped to the end 14", got)
	}
	c.must(http.StatusOK, "POST", "/v1/groups/billing/offsets", map[string]any{"to": "timestamp", "timestamp": 0}, nil)
	if got := committed(); got != 0 {
		t.Fatalf("to timestamp 0: broker has %d", got)
	}
	c.must(http.StatusOK, "POST", "/v1/groups/billing/offsets", map[string]any{"to": "latest", "topic": "orders"}, nil)
	if got := committed(); got != 14 {
		t.Fatalf("to latest: broker has %d", got)
	}
	c.must(http.StatusOK, "GET", "/v1/groups/billing", nil, &g)
	if g.State != "Empty" || g.Lag != 0 || len(g.Members) != 0 {
		t.Fatalf("after reset: %+v", g)
	}

	c.must(http.StatusNoContent, "DELETE", "/v1/groups/billing", nil, nil)
	c.refused(http.StatusNotFound, "GET", "/v1/groups/billing", nil)
	c.refused(http.StatusNotFound, "DELETE", "/v1/groups/billing", nil)
	c.refused(http.StatusNotFound, "GET", "/v1/groups/never-existed", nil)
	c.refused(http.StatusNotFound, "POST", "/v1/groups/never-existed/offsets", map[string]any{"to": "earliest"})
}

func waitState(t *testing.T, c *client, group, state string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var g api.GroupDetail
		c.must(http.StatusOK, "GET", "/v1/groups/"+group, nil, &g)
		if g.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s is %s, want %s", group, g.State, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTransactionsAreListedAndAnOpenOneIsAborted(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("ledger", "refunds"), broker.WithProperty("num.partitions", "1"))
	c := newClient(t, b)
	producer := b.Client(t, kgo.TransactionalID("payments-1"), kgo.TransactionTimeout(60*time.Second))
	if err := producer.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := producer.ProduceSync(ctx(t), &kgo.Record{Topic: "ledger", Value: []byte("debit")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// A second transactional id, to page over (its transaction is aborted,
	// after a record, so the id is known to the coordinator by then).
	other := b.Client(t, kgo.TransactionalID("refunds-1"))
	if err := other.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := other.ProduceSync(ctx(t), &kgo.Record{Topic: "refunds", Value: []byte("undone")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := other.EndTransaction(ctx(t), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	var txns []api.Transaction
	c.must(http.StatusOK, "GET", "/v1/transactions", nil, &txns)
	if len(txns) != 2 || txns[0].TransactionalID != "payments-1" || txns[1].TransactionalID != "refunds-1" {
		t.Fatalf("transactions: %+v", txns)
	}
	for query, want := range map[string]string{"limit=1": "payments-1", "after=payments-1": "refunds-1", "contains=REFUND": "refunds-1"} {
		var page []api.Transaction
		c.must(http.StatusOK, "GET", "/v1/transactions?"+query, nil, &page)
		if len(page) != 1 || page[0].TransactionalID != want {
			t.Fatalf("transactions?%s: %+v, want %s alone", query, page, want)
		}
	}
	c.must(http.StatusOK, "GET", "/v1/transactions?limit=1", nil, &txns)
	tx := txns[0]
	if tx.TransactionalID != "payments-1" || tx.State != "Ongoing" || tx.TimeoutMs != 60000 || tx.StartedAt == nil || tx.Hanging ||
		len(tx.Partitions) != 1 || tx.Partitions[0].Topic != "ledger" {
		t.Fatalf("open transaction: %+v", tx)
	}
	// The open transaction holds the last stable offset back.
	var d api.TopicDetail
	c.must(http.StatusOK, "GET", "/v1/topics/ledger", nil, &d)
	if d.Partitions[0].LastStableOffset != 0 || d.Partitions[0].HighWatermark != 1 {
		t.Fatalf("while open: %+v", d.Partitions[0])
	}

	c.must(http.StatusOK, "POST", "/v1/transactions/payments-1/abort", nil, &tx)
	if tx.State != "CompleteAbort" {
		t.Fatalf("after abort: %+v", tx)
	}
	// The producer is fenced; read_committed readers skip the record.
	if err := producer.EndTransaction(ctx(t), kgo.TryCommit); err == nil {
		t.Fatal("the fenced producer committed")
	}
	var page api.MessagesPage
	c.must(http.StatusOK, "GET", "/v1/topics/ledger/partitions/0/messages?isolation=read_committed", nil, &page)
	if len(page.Messages) != 0 {
		t.Fatalf("read_committed shows the aborted record: %+v", page.Messages)
	}
	c.refused(http.StatusConflict, "POST", "/v1/transactions/payments-1/abort", nil)
	c.refused(http.StatusNotFound, "POST", "/v1/transactions/nobody/abort", nil)
}

func TestShareGroupsAreListed(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("jobs"), broker.WithProperty("num.partitions", "1"))
	c := newClient(t, b)
	var groups []api.ShareGroup
	c.must(http.StatusOK, "GET", "/v1/share-groups", nil, &groups)
	if len(groups) != 0 {
		t.Fatalf("share groups before any: %+v", groups)
	}
	// A share group starts at the end (share.auto.offset.reset=latest):
	// produce until the member has joined and receives.
	worker := b.Client(t, kgo.ShareGroup("workers"), kgo.ConsumeTopics("jobs"), kgo.FetchMaxWait(100*time.Millisecond))
	deadline := time.Now().Add(20 * time.Second)
	for got := 0; got < 1; {
		if time.Now().After(deadline) {
			t.Fatal("the share consumer got nothing")
		}
		produceN(t, b, "jobs", 0, 1)
		pctx, cancel := context.WithTimeout(ctx(t), 500*time.Millisecond)
		got += worker.PollRecords(pctx, 10).NumRecords()
		cancel()
	}
	c.must(http.StatusOK, "GET", "/v1/share-groups", nil, &groups)
	if len(groups) != 1 || groups[0].Group != "workers" || len(groups[0].Members) != 1 ||
		len(groups[0].Members[0].Assignments) != 1 || groups[0].Members[0].Assignments[0].Topic != "jobs" {
		t.Fatalf("share groups: %+v", groups)
	}
}
