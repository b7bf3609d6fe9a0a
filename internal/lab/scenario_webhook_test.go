package lab

import (
	"testing"
	"time"
)

func TestOutOfOrderCountsEventsAppliedAfterALaterEventOfTheirKey(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	all := []applied{
		{"evt-1", "a", at(1)}, {"evt-3", "a", at(2)}, {"evt-2", "a", at(3)}, // evt-2 after evt-3: 1
		{"evt-4", "b", at(4)}, {"evt-5", "b", at(5)}, {"evt-4", "b", at(6)}, // a duplicate of evt-4 later: not out of order
		{"evt-0", "a", at(7)}, // after evt-3 too: 2
	}
	if n := outOfOrder(all); n != 2 {
		t.Fatalf("outOfOrder = %d, want 2", n)
	}
	ordered := promiseSpec{inOrder: true}
	if ordered.kept(ModeResult{OutOfOrder: 1}) || !ordered.kept(ModeResult{}) {
		t.Fatal("an in-order promise must break on an event out of order, and only then")
	}
	if !(promiseSpec{}).kept(ModeResult{OutOfOrder: 3}) {
		t.Fatal("a promise without order must not break on order")
	}
}
