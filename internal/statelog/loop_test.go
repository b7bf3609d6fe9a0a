package statelog

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/testkit"
)

// The loop sleeps until the deadline Next reports, not less.
func TestLoopTicksAtTheDeadline(t *testing.T) {
	start := time.Now()
	deadline := start.Add(50 * time.Millisecond)
	ticked := make(chan time.Duration, 1)
	var once sync.Once
	l := StartLoop(func() time.Time { return deadline }, func() {
		once.Do(func() { ticked <- time.Since(start) })
	}, time.Now, false)
	defer l.Close()
	select {
	case d := <-ticked:
		if d < 50*time.Millisecond {
			t.Fatalf("ticked after %v, before the deadline", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("never ticked")
	}
}

// A kick makes the loop tick at once, however far the deadline.
func TestLoopKick(t *testing.T) {
	var ticks atomic.Int32
	far := time.Now().Add(time.Hour)
	l := StartLoop(func() time.Time { return far }, func() { ticks.Add(1) }, time.Now, false)
	defer l.Close()
	l.Kick()
	testkit.Eventually(t, 5*time.Second, "a tick after the kick", func() bool { return ticks.Load() >= 1 })
}

// With a clock that does not move in real time (a test's fake clock), the
// loop still looks again every maxSleep and so notices the clock moved.
func TestLoopNoticesAFakeClockMoving(t *testing.T) {
	clock := testkit.NewClock(time.UnixMilli(1_700_000_000_000))
	deadline := clock.Now().Add(time.Hour)
	var due atomic.Int32
	l := startLoop(func() time.Time { return deadline }, func() {
		if !clock.Now().Before(deadline) {
			due.Add(1)
		}
	}, clock.Now, false, 5*time.Millisecond)
	defer l.Close()
	clock.Advance(time.Hour)
	testkit.Eventually(t, 5*time.Second, "a tick once the fake clock passed the deadline", func() bool { return due.Load() >= 1 })
}

// Close waits for the tick in progress and joins the goroutine (goleak in
// TestMain checks the join); it may be called twice.
func TestLoopCloseWaitsForTheTick(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	var once sync.Once
	l := StartLoop(time.Now, func() {
		once.Do(func() {
			close(entered)
			<-release
			finished.Store(true)
		})
	}, time.Now, false)
	<-entered
	closed := make(chan struct{})
	go func() {
		l.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a tick was running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-closed
	if !finished.Load() {
		t.Fatal("Close returned before the tick finished")
	}
	l.Close()
}

// A manual loop starts no goroutine; Kick and Close do nothing harmful.
func TestManualLoop(t *testing.T) {
	var ticks atomic.Int32
	l := StartLoop(time.Now, func() { ticks.Add(1) }, time.Now, true)
	l.Kick()
	l.Kick()
	l.Close()
	if ticks.Load() != 0 {
		t.Fatalf("a manual loop ticked %d times", ticks.Load())
	}
}
