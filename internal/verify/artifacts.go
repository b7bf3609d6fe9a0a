package verify

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// SeedEnv names the environment variable that fixes a run's seed, so a
// failing run can be replayed with the seed it logged.
const SeedEnv = "IDEM_SEED"

// ArtifactsEnv names the directory where failing runs save their evidence
// (default: $TMPDIR/idem-artifacts). CI can upload it.
const ArtifactsEnv = "IDEM_ARTIFACTS"

// Seed returns the seed from IDEM_SEED, or a fresh one, and logs it.
func Seed(t testing.TB) int64 {
	t.Helper()
	if s := os.Getenv(SeedEnv); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, s, err)
		}
		t.Logf("seed %d (from %s)", seed, SeedEnv)
		return seed
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d (replay with %s=%d)", seed, SeedEnv, seed)
	return seed
}

// Meta is written beside a saved history.
type Meta struct {
	Test   string    `json:"test"`
	Seed   int64     `json:"seed"`
	Time   time.Time `json:"time"`
	Replay string    `json:"replay"`
}

// SaveOnFailure registers a cleanup that, if t has failed, writes the history
// recorded by rec (history.jsonl) and the seed (meta.json) to a new directory
// under IDEM_ARTIFACTS, copies each of dirs into it (e.g. the broker's data
// directory), and logs the path. Cleanups run last-registered first, so call
// it after creating dirs and before registering the cleanup that stops the
// broker: the broker is stopped first, then the evidence saved, then the
// temporary directories removed.
func SaveOnFailure(t testing.TB, seed int64, rec *Recorder, dirs ...string) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir, err := SaveArtifacts(t.Name(), seed, rec.History(), dirs...)
		if err != nil {
			t.Logf("verify: saving the failing run's evidence: %v", err)
		}
		if dir != "" {
			t.Logf("verify: history and seed %d of the failing run written to %s", seed, dir)
		}
	})
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// SaveArtifacts writes h, the seed and copies of dirs into a fresh directory
// and returns its path.
func SaveArtifacts(test string, seed int64, h History, dirs ...string) (string, error) {
	root := os.Getenv(ArtifactsEnv)
	if root == "" {
		root = filepath.Join(os.TempDir(), "idem-artifacts")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(root, unsafeName.ReplaceAllString(test, "_")+"-"+strconv.FormatInt(seed, 10)+"-")
	if err != nil {
		return "", err
	}
	meta, _ := json.MarshalIndent(Meta{
		Test: test, Seed: seed, Time: time.Now().UTC(),
		Replay: fmt.Sprintf("%s=%d go test -run '^%s$'", SeedEnv, seed, test),
	}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), append(meta, '\n'), 0o644); err != nil {
		return dir, err
	}
	f, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return dir, err
	}
	if err := h.WriteJSONL(f); err != nil {
		f.Close()
		return dir, err
	}
	if err := f.Close(); err != nil {
		return dir, err
	}
	for i, d := range dirs {
		dst := filepath.Join(dir, fmt.Sprintf("dir%d-%s", i, filepath.Base(d)))
		if err := os.CopyFS(dst, os.DirFS(d)); err != nil {
			return dir, fmt.Errorf("copy %s: %w", d, err)
		}
	}
	return dir, nil
}
