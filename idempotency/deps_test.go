package idempotency_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

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

// Each store package links only its own driver.
func TestStorePackagesLinkOnlyTheirDriver(t *testing.T) {
	const sqlite, pgx, redis, prom = "modernc.org/sqlite", "github.com/jackc/pgx/v5", "github.com/redis/go-redis/v9", "github.com/prometheus/client_golang/prometheus"
	for pkg, c := range map[string]struct{ want, banned []string }{
		"github.com/idem-dev/idem/idempotency":                 {nil, []string{sqlite, pgx, redis, prom}},
		"github.com/idem-dev/idem/idempotency/sqlitestore":     {[]string{sqlite}, []string{pgx, redis}},
		"github.com/idem-dev/idem/idempotency/pgstore":         {[]string{pgx}, []string{sqlite, redis}},
		"github.com/idem-dev/idem/idempotency/redisstore":      {[]string{redis}, []string{sqlite, pgx}},
		"github.com/idem-dev/idem/idempotency/idempotencyprom": {[]string{prom}, []string{sqlite, pgx, redis}},
	} {
		deps := goList(t, pkg)
		for _, w := range c.want {
			if !slices.Contains(deps, w) {
				t.Errorf("%s does not link %s", pkg, w)
			}
		}
		for _, d := range deps {
			for _, b := range c.banned {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s links %s", pkg, d)
				}
			}
		}
	}
}
