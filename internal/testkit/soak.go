package testkit

import "os"

// SoakEnv names the environment variable that turns the reliability suites
// into soak runs: longer fault windows, more values, more transactions.
// .ci/run passes it through to go test (IDEM_SOAK=1 .ci/run), with a
// longer -timeout.
const SoakEnv = "IDEM_SOAK"

// Soak returns soak when IDEM_SOAK is set (to anything but "" or "0") and
// normal otherwise, so that a suite states its CI size and its soak size
// side by side.
func Soak[T any](normal, soak T) T {
	if v := os.Getenv(SoakEnv); v != "" && v != "0" {
		return soak
	}
	return normal
}
