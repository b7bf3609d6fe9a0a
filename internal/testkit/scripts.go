package testkit

import (
	"path/filepath"
	"testing"
)

// WalkScripts runs fn as a subtest for each data-driven script dir/*.txt.
// A package's testdata also holds its fuzzers' corpus (testdata/fuzz/…),
// which datadriven.Walk would run as scripts too; only the .txt files are
// scripts.
func WalkScripts(t *testing.T, dir string, fn func(t *testing.T, path string)) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no scripts (*.txt) in %s", dir)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) { fn(t, path) })
	}
}
