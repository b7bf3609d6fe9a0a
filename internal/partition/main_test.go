package partition

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// goroutine the broker starts must be joined on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
