package txn

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// debianPython is the interpreter that has the Debian package
// python3-confluent-kafka; a python3 earlier on PATH (pyenv) would not.
const debianPython = "/usr/bin/python3"

func requireConfluentKafka(t *testing.T) string {
	t.Helper()
	py := testkit.RequireTool(t, debianPython, "install the Debian package python3")
	out, err := exec.Command(py, "-c", "import confluent_kafka; print(confluent_kafka.version()[0], confluent_kafka.libversion()[0])").CombinedOutput()
	if err != nil {
		testkit.Unavailable(t, "%s cannot import confluent_kafka (install the Debian package python3-confluent-kafka): %v\n%s", py, err, out)
	}
	t.Logf("confluent-kafka, librdkafka: %s", bytes.TrimSpace(out))
	return py
}

// runPython runs a script of testdata with the test's deadline and decodes
// the JSON object it prints into res.
func runPython(t *testing.T, py string, timeout time.Duration, res any, script string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"testdata/" + script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", script, err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), res); err != nil {
		t.Fatalf("%s: output is not JSON: %v\n%s\nstderr:\n%s", script, err, stdout.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("%s logged:\n%s", script, stderr.String())
	}
}

type kafkaError struct {
	Name             string `json:"name"`
	Code             int    `json:"code"`
	Str              string `json:"str"`
	Fatal            bool   `json:"fatal"`
	Retriable        bool   `json:"retriable"`
	TxnRequiresAbort bool   `json:"txn_requires_abort"`
}

// TestConfluentKafkaPythonTransactionalCopierAndZombieFencing runs
// testdata/confluent_txn.py: a librdkafka transactional copier (consumer
// group + init_transactions, begin_transaction, produce,
// send_offsets_to_transaction, commit_transaction) with one transaction
// aborted on purpose and rewound, then zombie fencing by a second producer
// with the same transactional.id. franz-go then checks, read_committed,
// that the output is the input exactly once, in order per partition, with
// neither the aborted copies nor the zombie's record, and that the group's
// committed offsets are the input's end.
func TestConfluentKafkaPythonTransactionalCopierAndZombieFencing(t *testing.T) {
	py := requireConfluentKafka(t)
	b := brokertest.Run(t)
	const in, out, group, txnID = "py-in", "py-out", "py-copier", "py-copier-txn"
	const perPartition, batch = 40, 15
	brokerkit.CreateTopic(t, b, in, 2)
	brokerkit.CreateTopic(t, b, out, 2)
	input := map[int32][]string{0: brokerkit.Values("py-p0", perPartition), 1: brokerkit.Values("py-p1", perPartition)}
	for p, vs := range input {
		seed(t, b, in, p, vs)
	}

	var res struct {
		Copied              int         `json:"copied"`
		Transactions        int         `json:"transactions"`
		AbortedTransactions int         `json:"aborted_transactions"`
		AbortedValues       []string    `json:"aborted_values"`
		Fenced              *kafkaError `json:"fenced"`
		AfterFenced         *kafkaError `json:"after_fenced"`
		AfterFenceValues    []string    `json:"after_fence_values"`
		ReadCommitted       []struct {
			Partition int32  `json:"partition"`
			Value     string `json:"value"`
		} `json:"read_committed"` // in the order received
	}
	runPython(t, py, 60*time.Second, &res, "confluent_txn.py", b.Addr(), in, out, group, txnID,
		fmt.Sprint(2*perPartition), fmt.Sprint(batch))
	t.Logf("copied %d records in %d transactions, %d aborted", res.Copied, res.Transactions, res.AbortedTransactions)
	if res.Copied != 2*perPartition || res.AbortedTransactions != 1 {
		t.Fatalf("the copier copied %d records (want %d) and aborted %d transactions (want 1)", res.Copied, 2*perPartition, res.AbortedTransactions)
	}

	// Zombie fencing: the first producer's commit after the second
	// producer's init_transactions is refused with a fatal error (librdkafka
	// reports a fenced producer as the fatal _FENCED, or the broker's
	// PRODUCER_FENCED / INVALID_PRODUCER_EPOCH), and stays refused.
	fencedNames := []string{"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"}
	if res.Fenced == nil {
		t.Fatal("the zombie producer committed its transaction after a new producer with its transactional.id ran init_transactions")
	}
	if !res.Fenced.Fatal || !slices.Contains(fencedNames, res.Fenced.Name) {
		t.Fatalf("the zombie's commit_transaction failed with %+v, want a fatal fencing error (%v)", *res.Fenced, fencedNames)
	}
	if res.AfterFenced == nil || !res.AfterFenced.Fatal {
		t.Fatalf("after being fenced the zombie's begin_transaction gave %+v, want the sticky fatal error", res.AfterFenced)
	}

	// The output, read_committed: every input value once, in input order
	// per partition, then the successor's record; no zombie record, no
	// copy from the aborted transaction.
	var want []string
	for _, vs := range input {
		want = append(want, vs...)
	}
	want = append(want, res.AfterFenceValues...)
	recs := readCommitted(t, b, out, len(want))
	got := valuesOf(recs)
	// One producer id: the successor keeps the transactional id's producer
	// id at a higher epoch.
	oneTransactionalProducer(t, "what librdkafka wrote", recs)
	noneOf(t, "read_committed of "+out, got, "py-zombie")
	brokerkit.SameSet(t, "read_committed of "+out, got, want)
	for p, vs := range byPartition(recs) {
		if wantP := append(slices.Clone(input[p]), res.AfterFenceValues[p]); !slices.Equal(vs, wantP) {
			t.Fatalf("%s/%d holds %v, want %v", out, p, vs, wantP)
		}
	}

	// librdkafka's own read_committed consumer read the same, in the same
	// order per partition.
	pyRead := map[int32][]string{}
	for _, r := range res.ReadCommitted {
		pyRead[r.Partition] = append(pyRead[r.Partition], r.Value)
	}
	if wantRead := byPartition(recs); !maps.EqualFunc(pyRead, wantRead, slices.Equal) {
		t.Fatalf("librdkafka read_committed of %s: got %v, want %v", out, pyRead, wantRead)
	}

	// The aborted copies and the zombie's record are in the log, so it was
	// read_committed that hid them: read_uncommitted sees more records.
	// read_uncommitted sees them all: the copies that were aborted, the
	// committed ones, and the zombie's record.
	all := readUncommitted(t, b, out, len(want)+len(res.AbortedValues)+1)
	brokerkit.SameSet(t, "read_uncommitted of "+out+" less the committed values", subtract(t, valuesOf(all), want), append(res.AbortedValues, "py-zombie"))

	// The offsets the copier committed in its transactions are the group's.
	ends := brokerkit.EndOffsets(t, b, in)
	got2 := brokerkit.Committed(t, b, group, in)
	for p, end := range ends {
		if got2[p] != end {
			t.Errorf("%s/%d: group %s committed %d, want the end offset %d (all %v)", in, p, group, got2[p], end, got2)
		}
	}
}

// TestConfluentKafkaPythonConsumerWaitsForPendingTransactionalOffsets runs
// testdata/confluent_pending_offsets.py: a librdkafka read_committed
// consumer (OffsetFetch with RequireStable) joins a group while offsets for
// it are pending in an open transaction. It must receive nothing until the
// transaction commits (UNSTABLE_OFFSET_COMMIT, retried by the client), then
// start at the committed offsets; had the broker answered "no offset", the
// consumer would have started from the beginning of each partition.
func TestConfluentKafkaPythonConsumerWaitsForPendingTransactionalOffsets(t *testing.T) {
	py := requireConfluentKafka(t)
	b := brokertest.Run(t)
	const in, group = "py-pending-in", "py-pending"
	brokerkit.CreateTopic(t, b, in, 2)
	for p := range int32(2) {
		seed(t, b, in, p, brokerkit.Values(fmt.Sprintf("py-pending-p%d", p), 10))
	}

	var res struct {
		Assigned     int              `json:"assigned"`
		Early        []string         `json:"early"`
		FirstOffsets map[string]int64 `json:"first_offsets"`
	}
	runPython(t, py, 45*time.Second, &res, "confluent_pending_offsets.py", b.Addr(), in, group, "py-pending-txn")
	if res.Assigned != 2 {
		t.Fatalf("the consumer was assigned %d partitions, want 2", res.Assigned)
	}
	if len(res.Early) > 0 {
		t.Fatalf("the consumer received %v while its group's offsets were pending in an open transaction", res.Early)
	}
	if want := map[string]int64{"0": 5, "1": 7}; !maps.Equal(res.FirstOffsets, want) {
		t.Fatalf("after the commit the consumer started at %v, want the transaction's offsets %v", res.FirstOffsets, want)
	}
}

// TestConfluentKafkaPythonReadCommittedStopsAtTheLastStableOffset runs
// testdata/confluent_lso.py: behind committed records, a transaction stays
// open while a plain producer writes after it. A librdkafka read_committed
// consumer that starts at the end (ListOffsets latest, read_committed) must
// start at the last stable offset, the open transaction's first offset,
// and receive nothing until the transaction commits (Fetch stops at the
// LSO); then the transaction's records and the plain ones, in order. Had
// the broker answered the high watermark, the consumer would have skipped
// both.
func TestConfluentKafkaPythonReadCommittedStopsAtTheLastStableOffset(t *testing.T) {
	py := requireConfluentKafka(t)
	b := brokertest.Run(t)
	const topic = "py-lso"
	brokerkit.CreateTopic(t, b, topic, 1)
	before := brokerkit.Values("before", 5)
	seed(t, b, topic, 0, before)

	var res struct {
		Early []string `json:"early"`
		Read  []struct {
			Offset int64  `json:"offset"`
			Value  string `json:"value"`
		} `json:"read"`
		Want []string `json:"want"`
	}
	runPython(t, py, 45*time.Second, &res, "confluent_lso.py", b.Addr(), topic, "py-lso-txn")
	if len(res.Early) > 0 {
		t.Fatalf("read_committed consumer received %v while the transaction before them was open", res.Early)
	}
	var got []string
	for _, r := range res.Read {
		got = append(got, r.Value)
	}
	if !slices.Equal(got, res.Want) {
		t.Fatalf("after the commit the read_committed consumer read %v, want %v", got, res.Want)
	}
	if first := res.Read[0].Offset; first != int64(len(before)) {
		t.Fatalf("the consumer started at offset %d, want the LSO %d (the open transaction's first offset)", first, len(before))
	}
}
