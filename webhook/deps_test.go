package webhook_test

import (
	"os/exec"
	"strings"
	"testing"
)

func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

// A receiver links neither database driver nor Prometheus, and each store
// links only its own driver: a PostgreSQL-only dispatcher does not link
// SQLite, and the other way round.
func TestPackagesLinkOnlyTheirDriver(t *testing.T) {
	const m = "github.com/idem-dev/idem/webhook"
	for pkg, banned := range map[string][]string{
		m:                  {"modernc.org/sqlite", "github.com/jackc/pgx", "github.com/prometheus/", "github.com/redis/"},
		m + "/pgstore":     {"modernc.org/sqlite", "github.com/prometheus/"},
		m + "/sqlitestore": {"github.com/jackc/pgx", "github.com/prometheus/"},
		m + "/webhookprom": {"modernc.org/sqlite", "github.com/jackc/pgx"},
	} {
		for _, d := range goListDeps(t, pkg) {
			for _, b := range banned {
				if strings.HasPrefix(d, b) {
					t.Errorf("%s links %s", pkg, d)
				}
			}
		}
	}
	for pkg, want := range map[string]string{m + "/pgstore": "github.com/jackc/pgx/v5", m + "/sqlitestore": "modernc.org/sqlite"} {
		found := false
		for _, d := range goListDeps(t, pkg) {
			found = found || d == want
		}
		if !found {
			t.Errorf("%s does not link %s: the test would see nothing", pkg, want)
		}
	}
}
