package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under continuous integration: the CI
// environment variable is set to anything but "", "false" or "0" (CI
// services set CI=true; .ci/run does too).
func InCI() bool {
	switch os.Getenv("CI") {
	case "", "false", "0":
		return false
	}
	return true
}

// Unavailable ends a test that needs something this machine lacks (a client
// program, a database): under CI, which installs everything, a missing
// dependency is a broken setup and the test fails; on a developer's machine
// the test is skipped, with the message saying how to get it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// RequireTool returns the path of the external program name, or ends the
// test through Unavailable; install tells the reader how to get the
// program (e.g. "install the Debian package kcat").
func RequireTool(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s not found (%s): %v", name, install, err)
	}
	return p
}
