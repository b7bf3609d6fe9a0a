package share

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: the timer
// loop, the dead-letter writer and the share log's syncer stop on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
