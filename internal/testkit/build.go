package testkit

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildBinary builds the main package pkg (e.g. "./cmd/idem", relative to
// the module root) into t.TempDir() and returns the executable's path, for
// tests that run the real binary rather than a re-executed test binary
// (see Role).
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}
