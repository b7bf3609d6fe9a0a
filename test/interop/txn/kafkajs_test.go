package txn

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// kafkajsDir is where CI installs kafkajs from npm (the directory is
// committed with only txn.js and a .gitignore):
//
//	npm install --no-audit --no-fund --prefix test/interop/txn/testdata/kafkajs kafkajs@2.2.4
const kafkajsDir = "testdata/kafkajs"

// requireKafkajs returns the path of node, once kafkajs 2.2.4 is installed
// next to the script.
func requireKafkajs(t *testing.T) string {
	t.Helper()
	node := testkit.RequireTool(t, "node", "install Node.js 20")
	install := "npm install --no-audit --no-fund --prefix test/interop/txn/testdata/kafkajs kafkajs@2.2.4"
	pkg, err := os.ReadFile(filepath.Join(kafkajsDir, "node_modules", "kafkajs", "package.json"))
	if err != nil {
		testkit.Unavailable(t, "kafkajs is not installed (run %q in the repository root): %v", install, err)
	}
	var meta struct{ Version string }
	if err := json.Unmarshal(pkg, &meta); err != nil || meta.Version != "2.2.4" {
		t.Fatalf("kafkajs in %s is version %q (%v), want 2.2.4: run %q", kafkajsDir, meta.Version, err, install)
	}
	return node
}

// TestKafkajsTransactionsWithSendOffsets runs testdata/kafkajs/txn.js: a
// kafkajs transactional producer commits a transaction that also commits
// offsets of a group (sendOffsets), aborts one that sends other offsets,
// commits a third, and is fenced by a second producer with its
// transactionalId. franz-go then checks the log (read_committed and
// read_uncommitted) and the group's offsets; kafkajs's own read_committed
// consumer group and a new member of the offsets' group must agree.
func TestKafkajsTransactionsWithSendOffsets(t *testing.T) {
	node := requireKafkajs(t)
	b := brokertest.Run(t)
	const in, out, group = "js-in", "js-out", "js-copier"
	brokerkit.CreateTopic(t, b, in, 2)
	brokerkit.CreateTopic(t, b, out, 2)
	input := map[int32][]string{0: brokerkit.Values("js-in-p0", 10), 1: brokerkit.Values("js-in-p1", 10)}
	for p, vs := range input {
		seed(t, b, in, p, vs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "txn.js", b.Addr(), out, in, group)
	cmd.Dir = kafkajsDir
	cmd.Env = append(os.Environ(), "KAFKAJS_NO_PARTITIONER_WARNING=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kafkajs txn.js: %v\nstderr:\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("kafkajs logged:\n%s", stderr.String())
	}
	var res struct {
		Committed []string `json:"committed"`
		Aborted   []string `json:"aborted"`
		Fenced    *struct {
			Name    string `json:"name"`
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"fenced"`
		ReadCommitted []string `json:"readCommitted"`
		GroupRead     []string `json:"groupRead"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("script output is not JSON: %v\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}

	// The zombie's commit (EndTxn v1 at its old epoch) was refused.
	if res.Fenced == nil {
		t.Fatal("the zombie kafkajs producer committed after a new producer with its transactionalId initialised")
	}
	if fencedTypes := []string{"INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED"}; !slices.Contains(fencedTypes, res.Fenced.Type) {
		t.Fatalf("the zombie's commit failed with %+v, want one of %v", *res.Fenced, fencedTypes)
	}

	// franz-go, read_committed: the committed transactions and the
	// successor's, never the aborted one nor the zombie's.
	recs := readCommitted(t, b, out, len(res.Committed))
	got := valuesOf(recs)
	noneOf(t, "franz-go read_committed of what kafkajs wrote", got, "js-aborted", "js-zombie")
	brokerkit.SameSet(t, "franz-go read_committed of what kafkajs wrote", got, res.Committed)
	oneTransactionalProducer(t, "what kafkajs wrote", recs)
	// read_uncommitted: the aborted transactions are in the log.
	all := readUncommitted(t, b, out, len(res.Committed)+len(res.Aborted)+1)
	brokerkit.SameSet(t, "franz-go read_uncommitted of what kafkajs wrote", valuesOf(all), append(slices.Concat(res.Committed, res.Aborted), "js-zombie"))

	// kafkajs's own read_committed consumer group read the same.
	brokerkit.SameSet(t, "kafkajs read_committed consumer group", res.ReadCommitted, res.Committed)

	// The committed transaction's offsets became the group's (5 and 7), the
	// aborted one's (9 and 9) never did: a new kafkajs member of the group
	// started there.
	brokerkit.SameSet(t, "new kafkajs member of "+group, res.GroupRead, slices.Concat(input[0][5:], input[1][7:]))
}
