package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

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

func TestConfluentKafkaPythonAdminIdempotentProduceAndGroupConsume(t *testing.T) {
	py := requireConfluentKafka(t)
	b := startBroker(t)
	const topic, group, n = "py-orders", "py-group", 200

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/confluent_interop.py", b.Addr(), topic, group, fmt.Sprint(n))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("confluent_interop.py: %v\nstderr:\n%s", err, stderr.String())
	}
	var res struct {
		Produced  []string `json:"produced"`
		Delivered int      `json:"delivered"`
		Consumed  []string `json:"consumed"`
		Headers   []string `json:"headers"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("script output is not JSON: %v\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if res.Delivered != n {
		t.Fatalf("%d of %d deliveries reported", res.Delivered, n)
	}
	brokerkit.SameSet(t, "values the python group consumer read", res.Consumed, res.Produced)
	if !slices.Equal(res.Headers, []string{"source=python"}) {
		t.Errorf("headers read back as %v", res.Headers)
	}

	// What librdkafka wrote is what a different client reads: same values,
	// one producer id (idempotent), and the group's commits at the ends.
	recs := readAll(t, b, topic, n)
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Value))
	}
	brokerkit.SameSet(t, "values franz-go reads from what python produced", got, res.Produced)
	oneIdempotentProducer(t, recs)
	ends := brokerkit.EndOffsets(t, b, topic)
	commits := brokerkit.Committed(t, b, group, topic)
	for p, end := range ends {
		if commits[p] != end {
			t.Errorf("partition %d: committed %d, want the end offset %d", p, commits[p], end)
		}
	}
}
