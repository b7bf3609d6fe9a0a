package group

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// coordinator's timer loop and the offsets log's syncer must stop on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
