package statelog

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// log's syncer and every Loop must be joined by their Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
