package txn

import (
	"context"
	"errors"
	"sync"
	"time"
)

// coordinatorEpoch is the epoch markers carry. One node is always the
// coordinator of every transactional id, so it never changes.
const coordinatorEpoch = 0

// maxMarkerParallelism bounds the markers written at once for one
// transaction; each waits for its partition's fsync, so writing them in
// parallel is what keeps commit latency near one fsync.
const maxMarkerParallelism = 32

// startCompletionLocked starts the goroutine that writes t's markers and
// offset completions and then appends CompleteCommit/CompleteAbort. t is in
// PrepareCommit or PrepareAbort, durably.
func (c *Coordinator) startCompletionLocked(t *txnMeta) {
	if t.done != nil || c.closed {
		return
	}
	done := make(chan struct{})
	t.done = done
	s := t.s.clone()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(done)
		c.complete(t, s)
	}()
}

// complete writes the markers of the prepared state s of t, then records the
// completion. It gives up only when the coordinator closes; the next New
// starts it again from the log.
func (c *Coordinator) complete(t *txnMeta, s txnState) {
	commit := s.state == PrepareCommit
	// Batches verified while the transaction was Ongoing land before the
	// markers (see VerifyHold). Appends take microseconds (no fsync).
	t.appends.Wait()
	sem := make(chan struct{}, maxMarkerParallelism)
	var wg sync.WaitGroup
	for _, tp := range s.sortedPartitions() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.retry("write transaction marker", t.id, func(ctx context.Context) error {
				err := c.cfg.Markers.WriteMarker(ctx, tp.Topic, tp.Partition, s.pid, s.epoch, commit, coordinatorEpoch)
				switch {
				case errors.Is(err, ErrUnknownPartition):
					c.logger.Warn("skipping the transaction marker of a partition that no longer exists",
						"transactional_id", t.id, "topic", tp.Topic, "partition", tp.Partition)
					return nil
				case errors.Is(err, ErrProducerFenced):
					// The partition has seen a newer epoch of this producer
					// id, so this transaction's data there was already
					// closed by a later marker; retrying cannot succeed
					// (Kafka drops such a marker too).
					c.logger.Error("skipping a transaction marker the partition fenced",
						"transactional_id", t.id, "topic", tp.Topic, "partition", tp.Partition, "err", err)
					return nil
				}
				return err
			})
		}()
	}
	for _, g := range s.sortedGroups() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.retry("complete transactional offsets", t.id, func(ctx context.Context) error {
				return c.cfg.Offsets.CompleteTxnOffsets(ctx, g, s.pid, s.epoch, commit)
			})
		}()
	}
	wg.Wait()
	if c.ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.txns[t.id] != t || t.s.state != s.state || t.s.pid != s.pid || t.s.epoch != s.epoch {
		return
	}
	next := t.s.clone()
	next.state = CompleteAbort
	if commit {
		next.state = CompleteCommit
	}
	next.partitions, next.groups = nil, nil
	next.lastUpdate = c.now()
	if s.nextPID >= 0 {
		// Transaction version 2 with an exhausted epoch: the markers went
		// out at the last epoch of the old producer id; the client goes on
		// with the new one (EndTxnV2 answered it already).
		// lastEpoch stays the client's epoch before the bump, so that a
		// KIP-360 InitProducerId from a client that lost the EndTxn answer
		// (old id, that epoch) is recognised as a retry and gets the new id.
		next.lastPID, next.pid, next.epoch, next.nextPID = s.pid, s.nextPID, 0, -1
	}
	// Not waited for: see the package doc (Durability).
	if _, err := c.writeLocked(t.id, &next); err != nil {
		c.logger.Error("cannot record a completed transaction; it will be completed again after a restart",
			"transactional_id", t.id, "err", err)
	}
	t.done = nil
}

// retry calls fn until it succeeds or the coordinator closes, backing off
// from Config.retryBackoff up to a second.
func (c *Coordinator) retry(what, id string, fn func(ctx context.Context) error) {
	backoff := c.cfg.retryBackoff
	for attempt := 1; ; attempt++ {
		err := fn(c.ctx)
		if err == nil || c.ctx.Err() != nil {
			return
		}
		level := c.logger.Debug
		if attempt%10 == 1 {
			level = c.logger.Warn
		}
		level("transaction completion failed; retrying", "what", what, "transactional_id", id, "attempt", attempt, "err", err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// nextDeadline is when the timer goroutine next has work: the next pass
// over timed-out transactions or over expired ids. Compaction comes on a
// kick (see statelog.Config.Kick).
func (c *Coordinator) nextDeadline() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return minTime(c.nextAbort, c.nextExpire)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// tick does the timed work due at Now.
func (c *Coordinator) tick() {
	now := c.now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	type pending struct {
		t   *txnMeta
		end int64
	}
	var aborts []pending
	if !now.Before(c.nextAbort) {
		c.nextAbort = now.Add(c.cfg.AbortInterval)
		for _, t := range c.txns {
			if t.busy || t.s.state != Ongoing || now.Before(t.s.start.Add(t.s.timeout)) {
				continue
			}
			// Abort with a bumped epoch, as Kafka does: the producer's next
			// request is fenced instead of joining a transaction that is gone.
			next := t.s.clone()
			next.state = PrepareAbort
			next.epoch = bump(t.s.epoch)
			next.lastEpoch = noEpoch
			next.lastUpdate = now
			end, err := c.transitionLocked(t, next)
			if err != nil {
				c.logger.Error("cannot abort a timed-out transaction", "transactional_id", t.id, "err", err)
				continue
			}
			c.logger.Info("aborting a timed-out transaction", "transactional_id", t.id,
				"producer_id", next.pid, "epoch", next.epoch, "started", t.s.start, "timeout", t.s.timeout)
			aborts = append(aborts, pending{t, end})
		}
	}
	if !now.Before(c.nextExpire) {
		c.nextExpire = now.Add(c.cfg.ExpireInterval)
		for id, t := range c.txns {
			switch t.s.state {
			case Empty, CompleteCommit, CompleteAbort:
			default:
				continue
			}
			if t.busy || now.Sub(t.s.lastUpdate) < c.cfg.IDExpiration {
				continue
			}
			// A lost tombstone only brings the id back until the next pass.
			if _, err := c.writeLocked(id, nil); err != nil {
				c.logger.Error("cannot expire a transactional id", "transactional_id", id, "err", err)
				continue
			}
			c.logger.Info("forgot an idle transactional id", "transactional_id", id, "producer_id", t.s.pid)
		}
	}
	c.mu.Unlock()
	for _, p := range aborts {
		if err := c.awaitDurable(p.t, p.end); err != nil {
			c.logger.Error("timed-out transaction abort not durable", "transactional_id", p.t.id, "err", err)
			continue
		}
		c.stats.timedOut.Add(1)
		c.mu.Lock()
		if !c.closed && c.txns[p.t.id] == p.t {
			c.startCompletionLocked(p.t)
		}
		c.mu.Unlock()
	}
	if err := c.compact(); err != nil {
		c.logger.Error("transaction log compaction failed", "err", err)
	}
}
