package verify

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// SeedEnv names the environment variable that fixes a run's seed, so a
// failing run can be replayed with the seed it logged (verifytest.Seed
// reads it in tests).
const SeedEnv = "IDEM_SEED"

// ArtifactsEnv names the directory where failing runs save their evidence
// (default: $TMPDIR/idem-artifacts). CI can upload it.
const ArtifactsEnv = "IDEM_ARTIFACTS"

// Meta is written beside a saved history.
type Meta struct {
	Test   string    `json:"test"`
	Seed   int64     `json:"seed"`
	Time   time.Time `json:"time"`
	Replay string    `json:"replay"`
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
