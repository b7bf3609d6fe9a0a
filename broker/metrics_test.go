package broker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// sample is the value of the series name{labels} in b's registry: a
// counter's or gauge's value, a histogram's sample count; ok is false when
// there is no such series. labels are name, value pairs and must match all
// of the series' labels.
func sample(t *testing.T, b *brokertest.Broker, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	v, _, ok = sampleSum(t, b, name, labels...)
	return v, ok
}

// sampleSum is sample that also returns a histogram's sum.
func sampleSum(t *testing.T, b *brokertest.Broker, name string, labels ...string) (v, sum float64, ok bool) {
	t.Helper()
	return b.Metric(t, name, labels...)
}

// mustSample is sample for a series that must exist.
func mustSample(t *testing.T, b *brokertest.Broker, name string, labels ...string) float64 {
	t.Helper()
	v, ok := sample(t, b, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// Produce and Fetch move the per-topic counters by exactly what was
// written and served; the group commit's fsyncs are observed; a deleted
// topic's series go.
func TestTopicTrafficAndFsyncMetrics(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("traffic", "quiet"))
	ctx := ctxT(t)
	cl := b.Client(t, kgo.DefaultProduceTopic("traffic"), kgo.ProducerBatchCompression(kgo.NoCompression()))
	const n = 10
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "record-%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A retry of an acknowledged batch is not counted again.
	if got := mustSample(t, b, "idem_topic_produced_records_total", "topic", "traffic"); got != n {
		t.Fatalf("produced records %v, want %d", got, n)
	}
	written := mustSample(t, b, "idem_log_size_bytes", "topic", "traffic")
	if got := mustSample(t, b, "idem_topic_produced_bytes_total", "topic", "traffic"); got != written || got < n*61 {
		t.Fatalf("produced bytes %v, want the segment bytes %v", got, written)
	}
	if got := mustSample(t, b, "idem_topic_fetched_bytes_total", "topic", "traffic"); got != 0 {
		t.Fatalf("fetched bytes %v before any fetch", got)
	}
	consumeN(t, b, "traffic", n)
	if got := mustSample(t, b, "idem_topic_fetched_bytes_total", "topic", "traffic"); got != written {
		t.Fatalf("fetched bytes %v, want %v (each batch served once)", got, written)
	}
	if got := mustSample(t, b, "idem_topic_fetched_records_total", "topic", "traffic"); got != n {
		t.Fatalf("fetched records %v, want %d", got, n)
	}
	if got := mustSample(t, b, "idem_topic_produced_records_total", "topic", "quiet"); got != 0 {
		t.Fatalf("quiet topic produced %v", got)
	}

	// acks=all waited for fsyncs: each covered some of the bytes; together
	// they cover at least the topic's (the coordinators' logs add theirs).
	syncs, covered, ok := sampleSum(t, b, "idem_log_fsync_batch_bytes")
	if !ok || syncs < 1 || covered < written {
		t.Fatalf("fsync batches: %v fsyncs covering %v bytes, want ≥ 1 covering ≥ %v", syncs, covered, written)
	}
	if got, took, _ := sampleSum(t, b, "idem_log_fsync_seconds"); got != syncs || took <= 0 {
		t.Fatalf("fsync latency: %v observations (%v s), want %v", got, took, syncs)
	}

	adm := kadm.NewClient(b.Client(t))
	if _, err := adm.DeleteTopic(ctx, "traffic"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"idem_topic_produced_bytes_total", "idem_topic_produced_records_total", "idem_topic_fetched_bytes_total", "idem_topic_fetched_records_total"} {
		if v, ok := sample(t, b, name, "topic", "traffic"); ok {
			t.Errorf("%s of the deleted topic still reported: %v", name, v)
		}
	}
}

// Transactions are counted by outcome once each, and a fenced producer's
// refused request is counted.
func TestTransactionMetrics(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("tx"))
	ctx := ctxT(t)
	outcome := func(o string) float64 {
		t.Helper()
		return mustSample(t, b, "idem_transactions_total", "outcome", o)
	}
	txn := func(cl *kgo.Client, commit bool) error {
		if err := cl.BeginTransaction(); err != nil {
			return err
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
			return err
		}
		return cl.EndTransaction(ctx, kgo.TransactionEndTry(commit))
	}
	opts := []kgo.Opt{kgo.TransactionalID("tx-metrics"), kgo.DefaultProduceTopic("tx"), kgo.TransactionTimeout(10 * time.Second)}
	cl := b.Client(t, opts...)
	for _, commit := range []bool{true, false, true} {
		if err := txn(cl, commit); err != nil {
			t.Fatal(err)
		}
	}
	if b, c, a, to := outcome("begun"), outcome("committed"), outcome("aborted"), outcome("timed_out"); b != 3 || c != 2 || a != 1 || to != 0 {
		t.Fatalf("begun %v committed %v aborted %v timed_out %v, want 3 2 1 0", b, c, a, to)
	}
	if got := mustSample(t, b, "idem_producers_fenced_total"); got != 0 {
		t.Fatalf("fenced %v before any fencing", got)
	}

	// A second instance fences the first, whose open transaction is
	// aborted; the first's next request is refused.
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("old")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl2 := b.Client(t, opts...)
	if err := txn(cl2, true); err != nil {
		t.Fatal(err)
	}
	err := cl.EndTransaction(ctx, kgo.TryCommit)
	if err == nil {
		t.Fatal("the fenced instance committed")
	}
	if got := mustSample(t, b, "idem_producers_fenced_total"); got < 1 {
		t.Fatalf("fenced %v after the old instance's commit was refused (%v)", got, err)
	}
	if b, c, a := outcome("begun"), outcome("committed"), outcome("aborted"); b != 5 || c != 3 || a != 2 {
		t.Fatalf("begun %v committed %v aborted %v, want 5 3 2 (the fence aborts the old instance's transaction)", b, c, a)
	}
}

// Consumer-group lag is the high watermark minus the committed offset, per
// partition; joining a group counts a rebalance.
func TestConsumerGroupMetrics(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("lag"))
	ctx := ctxT(t)
	cl := b.Client(t, kgo.DefaultProduceTopic("lag"))
	const n = 10
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(b.Client(t))
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: "lag", Partition: 0, At: 4, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(ctx, "simple", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	if got := mustSample(t, b, "idem_consumer_group_lag", "group", "simple", "topic", "lag", "partition", "0"); got != n-4 {
		t.Fatalf("lag %v, want %d", got, n-4)
	}
	if got := mustSample(t, b, "idem_consumer_group_rebalances_total", "group", "simple"); got != 0 {
		t.Fatalf("a group without members rebalanced %v times", got)
	}

	member := b.Client(t, kgo.ConsumerGroup("members"), kgo.ConsumeTopics("lag"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	var got int
	for got < n {
		fs := member.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", got, n, err)
		}
		got += len(fs.Records())
	}
	if err := member.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustSample(t, b, "idem_consumer_group_lag", "group", "members", "topic", "lag", "partition", "0"); got != 0 {
		t.Fatalf("lag of a caught-up group %v", got)
	}
	if got := mustSample(t, b, "idem_consumer_group_rebalances_total", "group", "members"); got < 1 {
		t.Fatalf("rebalances %v after a member joined", got)
	}
	if got := mustSample(t, b, "idem_consumer_group_lag_skipped"); got != 0 {
		t.Fatalf("skipped %v of 2 series", got)
	}
}

// exprMetric finds the metric names in a PromQL expression.
var exprMetric = regexp.MustCompile(`\bidem_[a-zA-Z0-9_]+`)

// descName reads a Desc's fully qualified name.
var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Every idem_* metric the Grafana dashboard queries is one the broker
// registers, and every one it registers is in docs/metrics.md, so renaming
// or adding a metric without the dashboard and the docs fails here.
func TestGrafanaDashboardUsesRegisteredMetrics(t *testing.T) {
	raw, err := os.ReadFile("../docs/grafana/idem.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition" || k == "query") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	if len(exprs) < 15 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}
	if !strings.Contains(string(raw), "${DS_PROMETHEUS}") {
		t.Error("the dashboard does not use the ${DS_PROMETHEUS} data source variable")
	}

	b := brokertest.Run(t, broker.WithTopics("dash"))
	ctx := ctxT(t)
	cl := b.Client(t, kgo.DefaultProduceTopic("dash"))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumeN(t, b, "dash", 1)
	registered := map[string]bool{}
	ch := make(chan *prometheus.Desc)
	go func() { b.Registry().Describe(ch); close(ch) }()
	for d := range ch {
		if m := descName.FindStringSubmatch(d.String()); m != nil {
			registered[m[1]] = true
		}
	}
	if !registered["idem_topic_produced_bytes_total"] || !registered["idem_kafka_request_latency_seconds"] {
		t.Fatalf("reading the registry's metric names failed: %d names", len(registered))
	}
	var errs []error
	used := map[string]bool{}
	for _, e := range exprs {
		for _, name := range exprMetric.FindAllString(e, -1) {
			base := name
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if !registered[base] {
					base = strings.TrimSuffix(base, suffix)
				}
			}
			used[base] = true
			if !registered[base] {
				errs = append(errs, fmt.Errorf("%s (in %q)", name, e))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("the dashboard queries metrics the broker does not register:\n%v", err)
	}
	if len(used) < 20 {
		t.Fatalf("the dashboard uses only %d idem metrics", len(used))
	}

	// docs/metrics.md lists every idem_ metric the broker registers.
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range registered {
		if strings.HasPrefix(name, "idem_") && !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not list %s", name)
		}
	}
}
