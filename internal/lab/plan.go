package lab

import (
	"math/rand/v2"
	"slices"
	"time"
)

// plan is the seeded fault plan of a run: the same for every mode, keyed by
// event index (producer faults) and delivery count (consumer crashes), so
// that the modes face the same trouble at the same points.
type plan struct {
	lostAck    map[int]bool
	ackTimeout map[int]bool
	kill       map[int]time.Duration // event index → down time
	pause      map[int]time.Duration // event index → pause length
	crashes    []int                 // incarnation k crashes at its crashes[k]-th delivery
}

// Timeouts of the producer and the faults that must exceed them.
const (
	produceTimeout  = 800 * time.Millisecond // ProduceRequestTimeout; the client waits this + the overhead
	timeoutOverhead = 700 * time.Millisecond
	ackDelay        = 2 * time.Second // > produceTimeout + timeoutOverhead
)

// makePlan draws the plan from seed: a few events of the middle 80% get
// each producer fault, and each consumer incarnation an early crash point.
func makePlan(seed int64, n int, faults []Fault) plan {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x243f6a8885a308d3))
	pick := func(count int) map[int]bool {
		m := map[int]bool{}
		lo, hi := n/10, max(n/10+1, n*9/10)
		for range count {
			m[lo+rng.IntN(hi-lo)] = true
		}
		return m
	}
	has := func(f Fault) bool { return slices.Contains(faults, f) }
	p := plan{lostAck: map[int]bool{}, ackTimeout: map[int]bool{}, kill: map[int]time.Duration{}, pause: map[int]time.Duration{}}
	if has(FaultLostAck) {
		p.lostAck = pick(min(10, max(1, n/20)))
	}
	if has(FaultAckTimeout) {
		p.ackTimeout = pick(min(3, max(1, n/100)))
	}
	if has(FaultBrokerKill) {
		for i := range pick(min(2, max(1, n/250))) {
			p.kill[i] = time.Duration(200+rng.IntN(600)) * time.Millisecond
		}
	}
	if has(FaultPause) {
		for i := range pick(1) {
			p.pause[i] = time.Duration(1800+rng.IntN(700)) * time.Millisecond
		}
	}
	if has(FaultConsumerCrash) {
		k := min(5, max(1, n/40))
		for range k {
			// Early in an incarnation, so that it is reached even when an
			// earlier incarnation failed for another reason (a broker kill)
			// and left few events to consume.
			p.crashes = append(p.crashes, 1+rng.IntN(max(1, n/(4*k))))
		}
	}
	return p
}
