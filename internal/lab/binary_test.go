package lab_test

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/idem-dev/idem/internal/testkit"
)

// The idem binary end to end: `idem lab` starts `idem serve` and
// `idem lab-worker` children, prints the table, and its exit status is 0
// when every promise held and 1 when one broke.
func TestIdemLabBinaryExitsNonZeroExactlyWhenAPromiseBreaks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the idem binary")
	}
	bin := testkit.BuildBinary(t, "./cmd/idem")
	lab := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"lab", "-n", "20", "--seed", "1", "--dir", t.TempDir()}, args...)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return out.String(), 0
		case errors.As(err, &ee):
			return out.String() + errb.String(), ee.ExitCode()
		}
		t.Fatalf("idem lab: %v\n%s", err, errb.String())
		return "", -1
	}

	out, code := lab("--mode", "at-least-once,idempotent-consumer", "--faults", "lost-ack,consumer-crash")
	if code != 0 || !strings.Contains(out, "idempotent-consumer") || strings.Contains(out, "BROKEN") {
		t.Fatalf("exit %d (at-least-once duplicating is no broken promise):\n%s", code, out)
	}

	out, code = lab("--mode", "idempotent-consumer", "--faults", "lost-ack,consumer-crash", "--break", "skip-dedupe")
	if code != 1 || !strings.Contains(out, "BROKEN") {
		t.Fatalf("broken consumer: exit %d:\n%s", code, out)
	}

	out, code = lab("--mode", "offsets-in-db", "--faults", "none", "--json")
	var rep struct {
		Modes []struct {
			Mode string `json:"mode"`
			Kept *bool  `json:"kept"`
		} `json:"modes"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || len(rep.Modes) != 1 || rep.Modes[0].Kept == nil || !*rep.Modes[0].Kept {
		t.Fatalf("--json: exit %d, %v:\n%s", code, err, out)
	}
}
