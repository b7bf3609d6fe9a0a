package brokerkit

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/security"
)

// SeedUsers writes SCRAM-SHA-256 users into a data directory before the
// broker's first start, as `idem user create --data-dir` does; each user's
// password is its name followed by "-pw". A test of ACLs starts its broker
// with an admin already there, as a locked-down broker is never born
// unmanageable.
func SeedUsers(t testing.TB, dataDir string, users ...string) {
	t.Helper()
	s, err := security.Open(security.StoreConfig{FS: logstore.OSFS(), Dir: filepath.Join(dataDir, "__security")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, u := range users {
		c, err := security.NewCredential(security.ScramSHA256, u+"-pw", security.MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		if errs := s.AlterCredentials(context.Background(), []security.CredentialChange{{User: u, Mechanism: security.ScramSHA256, Credential: &c}}); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
}

// LockedDownBroker is the options of a broker with one SASL_PLAINTEXT
// listener, the authorizer on, "admin" as its super user, and users (admin
// among them, as the caller lists) seeded as SeedUsers does. Add topics and
// other options after these.
func LockedDownBroker(t testing.TB, users ...string) []broker.Option {
	t.Helper()
	dir := t.TempDir()
	SeedUsers(t, dir, users...)
	return []broker.Option{broker.WithDataDir(dir),
		broker.WithProperty("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
		broker.WithProperty("authorizer.class.name", "idem"),
		broker.WithProperty("super.users", "User:admin")}
}
