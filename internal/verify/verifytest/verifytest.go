// Package verifytest is the testing side of package verify: the seed a test
// logs so that a failing run can be replayed, and the evidence (history,
// fault log, seed, data directories) saved when a test fails. It is apart
// from verify so that the idem binary, which runs verify's harness in
// `idem lab`, does not link package testing.
package verifytest

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/verify"
)

// Seed returns the seed from IDEM_SEED (verify.SeedEnv), or a fresh one,
// and logs it with the command that replays it.
func Seed(t testing.TB) int64 {
	t.Helper()
	if s := os.Getenv(verify.SeedEnv); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", verify.SeedEnv, s, err)
		}
		t.Logf("seed %d (from %s)", seed, verify.SeedEnv)
		return seed
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d (replay with %s=%d)", seed, verify.SeedEnv, seed)
	return seed
}

// SaveOnFailure registers a cleanup that, if t has failed, writes the history
// recorded by rec (history.jsonl) and the seed (meta.json) to a new directory
// under IDEM_ARTIFACTS (verify.ArtifactsEnv), copies each of dirs into it
// (e.g. the broker's data directory), and logs the path. Cleanups run
// last-registered first, so call it after creating dirs and before
// registering the cleanup that stops the broker: the broker is stopped
// first, then the evidence saved, then the temporary directories removed.
func SaveOnFailure(t testing.TB, seed int64, rec *verify.Recorder, dirs ...string) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir, err := verify.SaveArtifacts(t.Name(), seed, rec.History(), dirs...)
		if err != nil {
			t.Logf("verify: saving the failing run's evidence: %v", err)
		}
		if dir != "" {
			t.Logf("verify: history and seed %d of the failing run written to %s", seed, dir)
		}
	})
}

// SaveMixOnFailure is SaveOnFailure for a run whose faults m injected: it
// also saves m's fault log (faults.log), and logs the seed that replays the
// schedule. The same cleanup order applies.
func SaveMixOnFailure(t testing.TB, m *verify.Mix, rec *verify.Recorder, dirs ...string) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir, err := m.Save(t.Name(), rec.History(), dirs...)
		if err != nil {
			t.Logf("verify: saving the failing run's evidence: %v", err)
		}
		if dir != "" {
			t.Logf("verify: history, fault log and seed %d of the failing run written to %s (replay with %s=%d)", m.Seed(), dir, verify.SeedEnv, m.Seed())
		}
	})
}
