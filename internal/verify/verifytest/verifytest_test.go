package verifytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/idem-dev/idem/internal/verify"
)

func TestSeedReadsTheReplayVariable(t *testing.T) {
	t.Setenv(verify.SeedEnv, "42")
	if got := Seed(t); got != 42 {
		t.Fatalf("Seed with %s=42 returned %d", verify.SeedEnv, got)
	}
}

// failingRunEnv makes TestFailingRunSavesEvidence fail on purpose; it is set
// only when TestSaveOnFailureLogsWhereTheEvidenceIs re-executes this binary.
const failingRunEnv = "IDEM_VERIFY_FAILING_RUN"

func TestFailingRunSavesEvidence(t *testing.T) {
	if os.Getenv(failingRunEnv) == "" {
		t.Skip("only run, failing on purpose, by TestSaveOnFailureLogsWhereTheEvidenceIs")
	}
	rec := verify.NewRecorder()
	rec.Invoke(1, verify.FSend, verify.Record{Value: verify.Value(1, 0), Partition: -1, Offset: -1})
	SaveOnFailure(t, 1234, rec, t.TempDir())
	SaveMixOnFailure(t, verify.NewMix(verify.MixConfig{Seed: 1234}), rec)
	t.Error("failing on purpose")
}

func TestSaveOnFailureLogsWhereTheEvidenceIs(t *testing.T) {
	artifacts := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFailingRunSavesEvidence$", "-test.v")
	cmd.Env = append(os.Environ(), failingRunEnv+"=1", verify.ArtifactsEnv+"="+artifacts)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the failing run passed:\n%s", out)
	}
	m := regexp.MustCompile(`history and seed 1234 of the failing run written to (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no path logged:\n%s", out)
	}
	dir := string(m[1])
	if !strings.HasPrefix(dir, artifacts) {
		t.Fatalf("evidence written to %s, outside %s=%s", dir, verify.ArtifactsEnv, artifacts)
	}
	for _, f := range []string{"history.jsonl", "meta.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	m = regexp.MustCompile(`history, fault log and seed 1234 of the failing run written to (\S+) \(replay with IDEM_SEED=1234\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no path of the fault log logged:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(string(m[1]), "faults.log")); err != nil {
		t.Error(err)
	}
}

func TestSaveOnFailureWritesNothingForAPassingRun(t *testing.T) {
	artifacts := t.TempDir()
	t.Setenv(verify.ArtifactsEnv, artifacts)
	t.Run("passing", func(t *testing.T) {
		SaveOnFailure(t, 1, verify.NewRecorder())
		SaveMixOnFailure(t, verify.NewMix(verify.MixConfig{Seed: 1}), verify.NewRecorder())
	})
	if entries, _ := os.ReadDir(artifacts); len(entries) != 0 {
		t.Fatalf("a passing run left %d entries in %s", len(entries), artifacts)
	}
}
