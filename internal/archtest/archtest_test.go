// Package archtest holds tests of the architecture's rules that no single
// package can check about itself.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBrokerImportsNoToolkitDependencies enforces architecture.md: the broker
// packages never import PostgreSQL, SQLite or the CLI library, so embedding
// a broker (brokertest.Run in a user's test) pulls in none of them.
func TestBrokerImportsNoToolkitDependencies(t *testing.T) {
	forbidden := []string{
		"github.com/jackc/pgx",
		"modernc.org/sqlite",
		"github.com/spf13/cobra",
		"github.com/spf13/pflag",
	}
	pkgs := []string{
		"github.com/idem-dev/idem/broker/...",
		"github.com/idem-dev/idem/internal/kafka/...",
		"github.com/idem-dev/idem/internal/logstore/...",
		"github.com/idem-dev/idem/internal/partition/...",
		"github.com/idem-dev/idem/internal/group/...",
	}
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned only %d packages; the check would prove nothing", len(deps))
	}
	for _, dep := range deps {
		for _, bad := range forbidden {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("broker packages depend on %s", dep)
			}
		}
	}
}

// TestStorageNeverCallsOS enforces logstore's rule that all file access goes
// through its FS interface (so the crash-simulating FS sees every write);
// only fs.go, which implements the OS FS, may use package os.
func TestStorageNeverCallsOS(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .GoFiles " "}}`, "github.com/idem-dev/idem/internal/logstore").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	files := strings.Fields(string(out))
	grep, _ := exec.Command("grep", "-l", `"os"`, "-r", "--include=*.go", "../logstore").CombinedOutput()
	for _, f := range strings.Fields(string(grep)) {
		if strings.HasSuffix(f, "_test.go") || strings.HasSuffix(f, "/fs.go") {
			continue
		}
		t.Errorf("%s imports os; storage code must go through logstore.FS", f)
	}
	if len(files) < 5 {
		t.Fatalf("expected logstore's files, got %v", files)
	}
}
