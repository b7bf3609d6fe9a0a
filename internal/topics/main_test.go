package topics

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// goroutine the manager starts must be joined on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
