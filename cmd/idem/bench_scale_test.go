package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchScenarioFlag: an unknown scenario names the accepted ones, and a
// scale scenario refuses --brokers (it must start its own broker child).
func TestBenchScenarioFlag(t *testing.T) {
	_, stderr, err := idem(t, "", "bench", "--scenario", "bogus")
	if err == nil || !strings.Contains(stderr, "throughput, partitions, connections, recovery, compression, memory") {
		t.Fatalf("unknown scenario: err %v, stderr %q", err, stderr)
	}
	_, stderr, err = idem(t, "", "bench", "--scenario", "memory", "--brokers", "127.0.0.1:9092")
	if err == nil || !strings.Contains(stderr, "--brokers and -X apply to --scenario throughput only") {
		t.Fatalf("scale scenario with --brokers: err %v, stderr %q", err, stderr)
	}
	// A zero rate once divided by zero deep in the latency run (a panic).
	_, stderr, err = idem(t, "", "bench", "--brokers", "127.0.0.1:9", "--rates", "1000,0")
	if err == nil || !strings.Contains(stderr, "latency rate 0: each --rates value must be at least 1 msg/s") || strings.Contains(stderr, "panic") {
		t.Fatalf("--rates 0: err %v, stderr %q", err, stderr)
	}
}

// TestBenchRecoveryScenarioCLI runs a scale scenario end to end through the
// command line: `idem bench` starts `idem serve` as its broker child (kills
// it, stops it with SIGTERM, restarts it), prints JSON and writes the chart.
func TestBenchRecoveryScenarioCLI(t *testing.T) {
	charts := t.TempDir()
	stdout, stderr, err := idem(t, "", "bench", "--scenario", "recovery", "--recovery-mib", "1,2",
		"--data-dir", t.TempDir(), "--json", "--chart", charts)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep struct {
		Rows []struct {
			LogBytes            int64   `json:"log_bytes"`
			Records             int64   `json:"records"`
			RecordsAfterRestart int64   `json:"records_after_restart"`
			StartKilledMs       float64 `json:"start_killed_ms"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout)
	}
	if len(rep.Rows) != 2 || rep.Rows[1].LogBytes != 2<<20 || rep.Rows[1].RecordsAfterRestart != rep.Rows[1].Records || rep.Rows[1].StartKilledMs <= 0 {
		t.Fatalf("report %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(charts, "recovery-startup.svg")); err != nil {
		t.Fatalf("chart: %v (stderr %s)", err, stderr)
	}
}
