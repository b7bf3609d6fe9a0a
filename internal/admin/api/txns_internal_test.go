package api

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestHangingIsOngoingPastItsTimeout: the coordinator aborts a transaction
// at its timeout, so one still Ongoing past it is hanging; a young one, or
// one being completed, is not.
func TestHangingIsOngoingPastItsTimeout(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	for _, c := range []struct {
		state   string
		ageMs   int64
		hanging bool
	}{
		{"Ongoing", 59_000, false},
		{"Ongoing", 61_000, true},
		{"PrepareCommit", 61_000, false},
		{"CompleteAbort", 61_000, false},
	} {
		d := kadm.DescribedTransaction{TxnID: "x", State: c.state, TimeoutMillis: 60_000, StartTimestamp: now.UnixMilli() - c.ageMs}
		got := transaction(d, now)
		if got.Hanging != c.hanging {
			t.Errorf("%s for %d ms: hanging %t, want %t", c.state, c.ageMs, got.Hanging, c.hanging)
		}
		if openState(c.state) && got.AgeMs != c.ageMs {
			t.Errorf("%s: age %d, want %d", c.state, got.AgeMs, c.ageMs)
		}
	}
}
