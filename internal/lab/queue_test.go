package lab_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/lab"
)

// The queue scenario: a classic group and a share group get the same jobs,
// poison and flaky ones among them, under every fault. Neither loses a job;
// the classic consumer holds up jobs behind the poisoned ones while it
// retries them in place, the share group does not; both dead-letter the
// poison.
func TestQueueClassicVersusShareGroup(t *testing.T) {
	cfg := testConfig(t, lab.ScenarioQueue, 150)
	cfg.Duration = 60 * time.Second
	rep := run(t, cfg)
	for _, m := range rep.Modes {
		t.Logf("%s: counts %v throughput %.1f/s", m.Mode, m.Counts, m.Throughput)
		if m.Kept == nil || !*m.Kept {
			t.Errorf("%s: %s", m.Mode, m.Verdict)
		}
		if m.Lost != 0 {
			t.Errorf("%s lost %d acknowledged jobs", m.Mode, m.Lost)
		}
		if m.Counts["dead_lettered"] == 0 {
			t.Errorf("%s dead-lettered nothing though some jobs are poison", m.Mode)
		}
		if m.Faults[string(lab.FaultConsumerCrash)] == 0 {
			t.Errorf("%s: no consumer crash injected: %v", m.Mode, m.Faults)
		}
	}
	classic, share := mode(t, rep, lab.AtLeastOnce), mode(t, rep, lab.ShareGroup)
	if classic.Counts["blocked"] <= share.Counts["blocked"] {
		t.Errorf("the classic group held up %d jobs behind poison, the share group %d: want more for classic",
			classic.Counts["blocked"], share.Counts["blocked"])
	}
	if share.Counts["dead_lettered"] != classic.Counts["dead_lettered"] {
		t.Logf("dead-lettered: classic %d, share %d (the classic consumer may dead-letter a job twice after a crash)",
			classic.Counts["dead_lettered"], share.Counts["dead_lettered"])
	}
	var out bytes.Buffer
	if err := lab.WriteTable(&out, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "BLOCKED") || !strings.Contains(out.String(), "DEAD-LETTERED") {
		t.Errorf("table:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}
