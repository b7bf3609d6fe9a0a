package group

import (
	"fmt"
	"testing"

	"github.com/idem-dev/idem/internal/logstore"
)

// Snapshot returns committed offsets in a stable order, leaves out whole
// groups beyond its limit and counts what it left out.
func TestSnapshotBoundsOffsets(t *testing.T) {
	c := mustOpen(t, testConfig(logstore.NewMemFS()))
	defer c.Close()
	commit(t, c, "a", map[TopicPartition]int64{{"t", 1}: 5, {"t", 0}: 7})
	commit(t, c, "b", map[TopicPartition]int64{{"t", 0}: 1, {"u", 0}: 2, {"u", 1}: 3})
	commit(t, c, "c", map[TopicPartition]int64{{"t", 0}: 9})

	offs, skipped, rebalances := c.Snapshot(10)
	if got := fmt.Sprint(offs); got != "[{a t 0 7} {a t 1 5} {b t 0 1} {b u 0 2} {b u 1 3} {c t 0 9}]" || skipped != 0 {
		t.Fatalf("unbounded: %s, skipped %d", got, skipped)
	}
	if got := fmt.Sprint(rebalances); got != "[{a 0} {b 0} {c 0}]" {
		t.Fatalf("rebalances of simple groups: %s", got)
	}
	offs, skipped, _ = c.Snapshot(3)
	if got := fmt.Sprint(offs); got != "[{a t 0 7} {a t 1 5} {c t 0 9}]" || skipped != 3 {
		t.Fatalf("limit 3: %s, skipped %d", got, skipped)
	}
}
