package dlq_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/dlq"
	"github.com/idem-dev/idem/internal/dlq/dlqtest"
)

// deadLetters fills dlq.orders: a share consumer of group billing rejects
// keys 0..5 of ten records spread over two partitions of orders.
func deadLetters(t *testing.T) (*brokertest.Broker, *kgo.Client) {
	t.Helper()
	b := brokertest.Run(t, broker.WithProperty("errors.deadletterqueue.auto.create.topics.enable", "true"))
	cl := b.Client(t)
	dlqtest.Fill(t, b, "orders", "billing", "dlq.orders", 10, 6)
	return b, cl
}

// redriven counts, per key, the records of orders that redrive wrote, and
// checks each went back to its source partition with its value.
func redriven(t *testing.T, cl *kgo.Client) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := dlq.ReadAll(context.Background(), cl, "orders", func(r *kgo.Record) {
		for _, h := range r.Headers {
			if h.Key == dlq.RedriveHeader {
				out[string(r.Key)]++
				k, _ := strconv.Atoi(string(r.Key))
				if r.Partition != int32(k%2) {
					t.Errorf("key %s redriven to partition %d, its source was %d", r.Key, r.Partition, k%2)
				}
				if string(r.Value) != "orders-"+string(r.Key) {
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
	o := dlq.Options{Batch: 2}
	if _, err := dlq.Redrive(ctx, cl, "dlq.orders", dlq.CrashAfter(o, 1)); !errors.Is(err, dlq.ErrSimulatedCrash) {
		t.Fatalf("first run: %v", err)
	}
	if got := redriven(t, cl); len(got) != 2 {
		t.Fatalf("after the killed run %d records were moved, want its first batch of 2: %v", len(got), got)
	}
	res, err := dlq.Redrive(ctx, cl, "dlq.orders", o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Recovered != 2 || res.Redriven != 4 || res.Already != 2 {
		t.Errorf("second run: %+v, want 2 recovered (so already redriven) and 4 redriven", res)
	}
	res, err = dlq.Redrive(ctx, cl, "dlq.orders", o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Redriven != 0 || res.Already != 6 {
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

// TestRedriveFilters: Group, Headers and Target select and direct what
// moves; records filtered out stay for a later run.
func TestRedriveFilters(t *testing.T) {
	_, cl := deadLetters(t)
	ctx := context.Background()
	adm := kadm.NewClient(cl)
	if resp, err := adm.CreateTopic(ctx, 1, 1, nil, "orders-retry"); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	res, err := dlq.Redrive(ctx, cl, "dlq.orders", dlq.Options{Group: "someone-else"})
	if err != nil || res.Redriven != 0 || res.Filtered != 6 {
		t.Fatalf("other group: %+v %v", res, err)
	}
	res, err = dlq.Redrive(ctx, cl, "dlq.orders", dlq.Options{Target: "orders-retry", Headers: map[string]string{"__dlq.errors.offset": "0"}})
	if err != nil || res.Redriven != 2 || res.Filtered != 4 {
		t.Fatalf("offset 0 of both partitions to orders-retry: %+v %v", res, err)
	}
	var moved []string
	if err := dlq.ReadAll(ctx, cl, "orders-retry", func(r *kgo.Record) { moved = append(moved, string(r.Key)) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(moved, ",") != "0,1" && strings.Join(moved, ",") != "1,0" {
		t.Errorf("orders-retry holds %v, want keys 0 and 1", moved)
	}
	res, err = dlq.Redrive(ctx, cl, "dlq.orders", dlq.Options{DryRun: true})
	if err != nil || res.Redriven != 4 || res.Already != 2 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
}

// TestRedriveLimitLeavesTheRestForLaterRuns: Limit moves that many; the
// next runs move the rest, nothing twice.
func TestRedriveLimitLeavesTheRestForLaterRuns(t *testing.T) {
	_, cl := deadLetters(t)
	ctx := context.Background()
	res, err := dlq.Redrive(ctx, cl, "dlq.orders", dlq.Options{Limit: 4})
	if err != nil || res.Redriven != 4 || res.Left != 2 {
		t.Fatalf("limit 4: %+v %v", res, err)
	}
	res, err = dlq.Redrive(ctx, cl, "dlq.orders", dlq.Options{Limit: 4})
	if err != nil || res.Redriven != 2 || res.Left != 0 || res.Already != 4 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	if got := redriven(t, cl); len(got) != 6 {
		t.Errorf("redriven keys %v, want 6 once each", got)
	}
}

// TestRedriveRefusesUnknownTopicsAndOverlap: an unknown dead-letter or
// target topic is Kafka's UNKNOWN_TOPIC_OR_PARTITION; a second redrive of
// the same topic while one runs is dlq.ErrRedriveRunning, and whatever the
// interleaving no record arrives twice.
func TestRedriveRefusesUnknownTopicsAndOverlap(t *testing.T) {
	_, cl := deadLetters(t)
	ctx := context.Background()
	if _, err := dlq.Redrive(ctx, cl, "dlq.nothing", dlq.Options{}); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("unknown dead-letter topic: %v", err)
	}
	if _, err := dlq.Redrive(ctx, cl, "dlq.orders", dlq.Options{Target: "nowhere"}); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("unknown target: %v", err)
	}
	var wg sync.WaitGroup
	results := make([]dlq.Result, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = dlq.Redrive(ctx, cl, "dlq.orders", dlq.Options{Batch: 1}) })
	}
	wg.Wait()
	moved := 0
	for i, err := range errs {
		switch {
		case err == nil:
			moved += results[i].Redriven
		case errors.Is(err, dlq.ErrRedriveRunning):
		default:
			t.Errorf("run %d: %v", i, err)
		}
	}
	if moved != 6 {
		t.Errorf("the concurrent runs moved %d, want 6 in all: %+v %v", moved, results, errs)
	}
	for k, n := range redriven(t, cl) {
		if n != 1 {
			t.Errorf("key %s arrived %d times", k, n)
		}
	}
}

// TestListPagesThroughTheDeadLetters: dlq.List shows each dead letter's source,
// group, delivery count and reason, pages with a cursor, and marks what was
// redriven; dlq.Topics finds the topic with its count and the group naming it.
func TestListPagesThroughTheDeadLetters(t *testing.T) {
	_, cl := deadLetters(t)
	ctx := context.Background()
	first, err := dlq.List(ctx, cl, "dlq.orders", dlq.ListOptions{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Records) != 4 || first.Next == nil {
		t.Fatalf("first page: %d records, next %v", len(first.Records), first.Next)
	}
	second, err := dlq.List(ctx, cl, "dlq.orders", dlq.ListOptions{Limit: 4, From: first.Next})
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Records) != 2 || second.Next != nil {
		t.Fatalf("second page: %d records, next %v", len(second.Records), second.Next)
	}
	seen := map[string]bool{}
	for _, r := range append(first.Records, second.Records...) {
		src := r.Source.Topic + "/" + strconv.Itoa(int(r.Source.Partition)) + "/" + strconv.FormatInt(r.Source.Offset, 10)
		if seen[src] {
			t.Errorf("%s listed twice", src)
		}
		seen[src] = true
		if r.Source.Topic != "orders" || r.Source.Offset < 0 || r.Group != "billing" || r.DeliveryCount != 1 ||
			r.Reason != "rejected by the consumer" || r.Redriven || r.Headers["__dlq.errors.group"] != "billing" {
			t.Errorf("record %+v", r)
		}
	}
	if _, err := dlq.List(ctx, cl, "nothing", dlq.ListOptions{Limit: 1}); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("unknown topic: %v", err)
	}

	topics, err := dlq.Topics(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 1 || topics[0].Name != "dlq.orders" || !topics[0].Exists || topics[0].Records != 6 ||
		strings.Join(topics[0].Groups, ",") != "billing" {
		t.Errorf("topics: %+v", topics)
	}
	if ok, err := dlq.IsDeadLetterTopic(ctx, cl, "orders"); ok || err != nil {
		t.Errorf("orders is a dead-letter topic: %v %v", ok, err)
	}

	if res, err := dlq.Redrive(ctx, cl, "dlq.orders", dlq.Options{Limit: 1}); err != nil || res.Redriven != 1 {
		t.Fatalf("redrive one: %+v %v", res, err)
	} else if err != nil {
		t.Fatal(err)
	}
	all, err := dlq.List(ctx, cl, "dlq.orders", dlq.ListOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range all.Records {
		if r.Redriven {
			n++
		}
	}
	if len(all.Records) != 6 || n != 1 {
		t.Errorf("after redriving one: %d records, %d redriven", len(all.Records), n)
	}
}

// TestListPagesAcrossPartitions: pages of 1 to 6 records walk partition
// 0's three records, then partition 1's two, each record once, no page
// empty, and the last page says there is no next.
func TestListPagesAcrossPartitions(t *testing.T) {
	b := brokertest.Run(t)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := context.Background()
	if resp, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "dlq.multi"); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	for i, p := range []int32{0, 0, 0, 1, 1} {
		r := &kgo.Record{Topic: "dlq.multi", Partition: p, Headers: []kgo.RecordHeader{{Key: dlq.HeaderPrefix + "offset", Value: []byte(strconv.Itoa(i))}}}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for limit := 1; limit <= 6; limit++ {
		var seen []string
		var from *dlq.Cursor
		for pages := 0; ; pages++ {
			if pages == 6 {
				t.Fatalf("limit %d: still paging after 6 pages: %v", limit, seen)
			}
			pg, err := dlq.List(ctx, cl, "dlq.multi", dlq.ListOptions{Limit: limit, From: from})
			if err != nil {
				t.Fatal(err)
			}
			if len(pg.Records) == 0 {
				t.Errorf("limit %d: an empty page after %v", limit, seen)
			}
			for _, r := range pg.Records {
				seen = append(seen, strconv.FormatInt(r.Source.Offset, 10))
			}
			if pg.Next == nil {
				break
			}
			from = pg.Next
		}
		if got := strings.Join(seen, ","); got != "0,1,2,3,4" {
			t.Errorf("limit %d: pages listed %s, want 0,1,2,3,4", limit, got)
		}
	}
}

// TestRedriveReadsPastTransactionMarkers: when the source partitions end
// with a transaction's commit marker (which a consumer never sees as a
// record), reading them to their end offsets still ends.
func TestRedriveReadsPastTransactionMarkers(t *testing.T) {
	b, cl := deadLetters(t)
	txn := b.Client(t, kgo.TransactionalID("late-writer"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		if err := txn.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: p, Key: []byte("late"), Value: []byte("late")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	res, err := dlq.Redrive(ctx, cl, "dlq.orders", dlq.Options{})
	if err != nil || res.Redriven != 6 {
		t.Fatalf("redrive: %+v %v", res, err)
	}
	if got := redriven(t, cl); len(got) != 6 {
		t.Errorf("redriven keys %v", got)
	}
}
