package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
)

// startBrokerOn runs a broker on dir in this process (closed by the caller).
func startBrokerOn(t *testing.T, dir string) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.WithDataDir(dir), broker.WithKafkaAddr("127.0.0.1:0"), broker.WithAdminAddr(""))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStorageCheckAndRepair is the operator's path through a damaged
// partition: check finds it (exit 1), repair without --yes changes nothing,
// repair --yes cuts the log at the damage and keeps the cut bytes in
// quarantine, and the broker then serves the partition again.
func TestStorageCheckAndRepair(t *testing.T) {
	dir := t.TempDir()
	b := startBrokerOn(t, dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("pay"), kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 20 { // 20 batches: one record each
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "r%02d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	b.Close()

	// While a broker runs, storage commands refuse to touch its directory.
	b = startBrokerOn(t, dir)
	if _, errOut, err := idem(t, "", "storage", "check", "--data-dir", dir); err == nil || !strings.Contains(errOut, "in use") {
		t.Fatalf("check beside a running broker: %v %s", err, errOut)
	}
	b.Close()

	out, _, err := idem(t, "", "storage", "check", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "pay-0") || strings.Contains(out, "DAMAGED") {
		t.Fatalf("check of a healthy directory: %v\n%s", err, out)
	}
	seg := findSegment(t, dir)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff // somewhere in the middle batch
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}

	out, _, err = idem(t, "", "storage", "check", "--data-dir", dir)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "DAMAGED below the recovery point") {
		t.Fatalf("check of a damaged log: %v\n%s", err, out)
	}
	out, _, _ = idem(t, "", "storage", "check", "--data-dir", dir, "--json")
	var report struct {
		Partitions []struct {
			Damage *struct{ Offset int64 } `json:"damage"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || len(report.Partitions) != 1 || report.Partitions[0].Damage == nil {
		t.Fatalf("check --json: %v\n%s", err, out)
	}
	cut := report.Partitions[0].Damage.Offset

	out, _, err = idem(t, "", "storage", "repair", "--data-dir", dir, "--topic", "pay", "--partition", "0")
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "nothing changed") {
		t.Fatalf("repair without --yes:\n%s", out)
	}
	if after, _ := os.ReadFile(seg); len(after) != len(data) {
		t.Fatal("repair without --yes changed the log")
	}
	out = mustIdem(t, "", "storage", "repair", "--data-dir", dir, "--topic", "pay", "--partition", "0", "--yes")
	if !strings.Contains(out, fmt.Sprintf("now ends at offset %d", cut)) {
		t.Fatalf("repair --yes:\n%s", out)
	}
	q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "pay-0-*", "*"))
	if len(q) != 1 {
		t.Fatalf("quarantine holds %v", q)
	}
	mustIdem(t, "", "storage", "check", "--data-dir", dir)

	b = startBrokerOn(t, dir)
	defer b.Close()
	cl, err = kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("pay"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	for int64(len(got)) < cut {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records after the repair", len(got), cut)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	for i, v := range got {
		if v != fmt.Sprintf("r%02d", i) {
			t.Fatalf("record %d is %q after the repair", i, v)
		}
	}
}

func findSegment(t *testing.T, dataDir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dataDir, "topics", "*", "0", "00000000000000000000.log"))
	if len(m) != 1 {
		t.Fatalf("segments: %v", m)
	}
	return m[0]
}
