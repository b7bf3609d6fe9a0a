package testkit

import (
	"os"
	"testing"
)

// Role is a program that a test binary can run instead of its tests: a
// broker, a copier, the idem command line. A test starts the role by
// re-executing its own binary (os.Args[0]) with Env set in the child's
// environment, so it can SIGKILL the child without building anything.
type Role struct {
	// Env names the environment variable that selects the role; its value
	// is the role's specification (a JSON document, or "1" when there is
	// nothing to say).
	Env string
	// Run runs the role with the value of Env and returns the process's
	// exit code.
	Run func(spec string) int
}

// Main is the TestMain of a test binary that doubles as the given roles:
// if one role's variable is set, it runs that role and exits with its
// code; otherwise it runs the tests.
func Main(m *testing.M, roles ...Role) {
	for _, r := range roles {
		if spec := os.Getenv(r.Env); spec != "" {
			os.Exit(r.Run(spec))
		}
	}
	os.Exit(m.Run())
}
