package statelog

import (
	"sync"
	"time"
)

// maxSleep is the longest a Loop sleeps between ticks: a clock that jumps,
// or a test's fake clock, is noticed within it.
const maxSleep = time.Second

// Loop is an owner's one timer goroutine: it calls tick when the earliest
// deadline next reports is reached, when kicked, and at least every second.
// Close stops it and waits for it.
type Loop struct {
	next     func() time.Time
	tick     func()
	now      func() time.Time
	maxSleep time.Duration
	kickc    chan struct{} // capacity 1: kicks while a tick runs collapse into one
	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when the goroutine returns
	once     sync.Once
}

// StartLoop starts the goroutine. next returns the earliest deadline of the
// owner's timed work, in now's time; tick does the work that is due (and
// compacts, if the owner wants it to); each takes whatever lock it needs.
// With manual set no goroutine starts: a test calls the owner's tick
// itself, and Kick does nothing.
func StartLoop(next func() time.Time, tick func(), now func() time.Time, manual bool) *Loop {
	return startLoop(next, tick, now, manual, maxSleep)
}

func startLoop(next func() time.Time, tick func(), now func() time.Time, manual bool, sleep time.Duration) *Loop {
	l := &Loop{next: next, tick: tick, now: now, maxSleep: sleep,
		kickc: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if manual {
		close(l.done)
		return l
	}
	go l.run()
	return l
}

func (l *Loop) run() {
	defer close(l.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		d := min(max(l.next().Sub(l.now()), 0), l.maxSleep)
		t.Reset(d)
		select {
		case <-l.stop:
			return
		case <-l.kickc:
		case <-t.C:
		}
		l.tick()
	}
}

// Kick makes the goroutine tick soon and recompute its deadline; call it
// when a new deadline may be earlier than the one it sleeps towards, or when
// work is due (compaction). It never blocks, so it may be called with the
// owner's lock held.
func (l *Loop) Kick() {
	select {
	case l.kickc <- struct{}{}:
	default:
	}
}

// Close stops the goroutine and returns once it has returned (after the
// tick in progress, if any). The owner must not hold a lock that Tick or
// Next takes. Close may be called more than once.
func (l *Loop) Close() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}
