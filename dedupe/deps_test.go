package dedupe_test

import (
	"os/exec"
	"strings"
	"testing"
)

// goList returns the packages pkg links (go list -deps).
func goList(t *testing.T, pkg string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not in PATH: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

// Each store package links only its own driver: a PostgreSQL-only service
// does not link SQLite, and the other way round.
func TestStorePackagesLinkOnlyTheirDriver(t *testing.T) {
	for pkg, banned := range map[string][]string{
		"github.com/idem-dev/idem/dedupe":             {"modernc.org/sqlite", "github.com/jackc/pgx", "github.com/prometheus/", "github.com/redis/"},
		"github.com/idem-dev/idem/dedupe/pgstore":     {"modernc.org/sqlite", "github.com/redis/"},
		"github.com/idem-dev/idem/dedupe/sqlitestore": {"github.com/jackc/pgx", "github.com/redis/"},
		"github.com/idem-dev/idem/dedupe/dedupeprom":  {"modernc.org/sqlite", "github.com/jackc/pgx"},
	} {
		deps := goList(t, pkg)
		for _, d := range deps {
			for _, b := range banned {
				if strings.HasPrefix(d, b) {
					t.Errorf("%s links %s", pkg, d)
				}
			}
		}
	}
	// The check itself: each store does link its own driver.
	for pkg, want := range map[string]string{
		"github.com/idem-dev/idem/dedupe/pgstore":     "github.com/jackc/pgx/v5",
		"github.com/idem-dev/idem/dedupe/sqlitestore": "modernc.org/sqlite",
	} {
		found := false
		for _, d := range goList(t, pkg) {
			found = found || d == want
		}
		if !found {
			t.Errorf("%s does not link %s: the test would see nothing", pkg, want)
		}
	}
}
