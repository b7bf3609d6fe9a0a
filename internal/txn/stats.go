package txn

import "sync/atomic"

// stats counts what the coordinator decided, for /metrics. Atomics, so
// Stats needs no lock and the counting paths (some under mu held for
// reading) just add.
type stats struct {
	begun, committed, aborted, timedOut, fenced atomic.Int64
}

// Stats is a snapshot of the coordinator's counters since it started.
type Stats struct {
	// Begun counts transactions started (the first AddPartitions or
	// AddOffsets, explicit or implicit, of an idle transactional id).
	Begun int64
	// Committed and Aborted count EndTxn decisions (PrepareCommit,
	// PrepareAbort made durable); Aborted also counts the abort of an
	// open transaction when a new instance of its producer calls
	// InitProducerId. TimedOut counts transactions the coordinator aborted
	// because they outlived transaction.timeout.ms; they are not in
	// Aborted.
	Committed, Aborted, TimedOut int64
	// Fenced counts requests refused with ErrProducerFenced: a producer
	// whose epoch a newer instance (or a timeout abort) has bumped.
	Fenced int64
}

// Stats returns the coordinator's counters.
func (c *Coordinator) Stats() Stats {
	s := &c.stats
	return Stats{
		Begun: s.begun.Load(), Committed: s.committed.Load(), Aborted: s.aborted.Load(),
		TimedOut: s.timedOut.Load(), Fenced: s.fenced.Load(),
	}
}

// fencedErr counts a fenced request and returns ErrProducerFenced.
func (c *Coordinator) fencedErr() error {
	c.stats.fenced.Add(1)
	return ErrProducerFenced
}

// decided counts a durable end decision.
func (c *Coordinator) decided(commit bool) {
	if commit {
		c.stats.committed.Add(1)
	} else {
		c.stats.aborted.Add(1)
	}
}
