package txn

import (
	"context"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/txnkit"
)

// TestIdemTxnCommand runs `idem txn list` and `idem txn describe` against a
// broker with one open and one committed transaction and checks that they
// show state, producer id and epoch, partitions, age and timeout.
func TestIdemTxnCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the idem binary")
	}
	idem := testkit.BuildBinary(t, "./cmd/idem")
	b := brokertest.Run(t)
	seeds := []string{b.Addr()}
	txnkit.CreateTopics(t, seeds, 2, "cli")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := b.Client(t, kgo.TransactionalID("open-one"), kgo.TransactionTimeout(45*time.Second),
		kgo.DefaultProduceTopic("cli"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	done := b.Client(t, kgo.TransactionalID("done-one"), kgo.DefaultProduceTopic("cli"))
	for _, cl := range []*kgo.Client{open, done} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v"), Partition: 1}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := done.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, idem, append(args, "--brokers", b.Addr())...).CombinedOutput()
		if err != nil {
			t.Fatalf("idem %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := run("txn", "list")
	for _, re := range []string{
		`TRANSACTIONAL-ID\s+STATE\s+PRODUCER-ID\s+EPOCH\s+PARTITIONS\s+AGE\s+TIMEOUT`,
		`open-one\s+Ongoing\s+\d+\s+0\s+1\s+\d[\d.]*m?s\s+45s`,
		`done-one\s+CompleteCommit\s+\d+\s+0\s+0\s+\S+\s+40s`,
	} {
		if !regexp.MustCompile(re).MatchString(list) {
			t.Errorf("idem txn list does not match %q:\n%s", re, list)
		}
	}
	desc := run("txn", "describe", "open-one")
	for _, re := range []string{`STATE\s+Ongoing`, `EPOCH\s+0`, `TIMEOUT\s+45s`, `STARTED\s+\d{4}-`, `PARTITIONS\s+cli/1`} {
		if !regexp.MustCompile(re).MatchString(desc) {
			t.Errorf("idem txn describe does not match %q:\n%s", re, desc)
		}
	}
	if out, err := exec.CommandContext(ctx, idem, "txn", "describe", "nobody", "--brokers", b.Addr()).CombinedOutput(); err == nil {
		t.Errorf("describing an unknown id succeeded:\n%s", out)
	}
}
