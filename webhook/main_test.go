package webhook_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The test binary doubles as the dispatcher process of the kill -9
	// tests (crash_test.go).
	if spec := os.Getenv(dispatcherRoleEnv); spec != "" {
		os.Exit(runDispatcherRole(spec))
	}
	goleak.VerifyTestMain(m,
		// database/sql and pgx pools close their connections asynchronously.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}
