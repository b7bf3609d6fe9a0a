package group

import (
	"fmt"
	"maps"
	"slices"

	"github.com/idem-dev/idem/internal/statelog"
)

// replay rebuilds memory from the whole log; called before the coordinator
// is shared, so it takes c.mu only to keep the Locked convention honest.
func (c *Coordinator) replay() error {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.log.Replay(func(b statelog.Batch, pos int64, r statelog.Record) error {
		return c.applyRecordLocked(b, pos, r, now)
	}); err != nil {
		return err
	}
	c.restoreConsumerGroupsLocked(now)
	return nil
}

// appendLocked writes recs as one batch and returns the log end offset to
// wait for; record i lands at position end-len(recs)+i. Called with c.mu held
// so log order matches memory order.
func (c *Coordinator) appendLocked(recs []statelog.Record) (int64, error) {
	return c.appendAsLocked(statelog.Batch{}, recs)
}

// appendAsLocked is appendLocked for transactional offset commits and their
// markers (Kafka writes them to __consumer_offsets the same way).
func (c *Coordinator) appendAsLocked(b statelog.Batch, recs []statelog.Record) (int64, error) {
	end, err := c.log.Append(b, recs)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return end, nil
}

// appendBestEffortLocked appends records whose loss in a crash is harmless
// (group records, expiry tombstones): they are replayed consistently if they
// made it and the state they describe is rebuilt conservatively if not.
func (c *Coordinator) appendBestEffortLocked(recs []statelog.Record) {
	if _, err := c.appendLocked(recs); err != nil {
		c.logger.Error("offsets log append failed", "err", err)
	}
}

// liveRecordsLocked is how many records a snapshot would write now (what
// the compaction threshold compares the log with).
func (c *Coordinator) liveRecordsLocked() int {
	live := len(c.groups)
	for _, g := range c.groups {
		live += len(g.offsets)
		if g.consumer != nil {
			live += len(g.consumer.members)
		}
	}
	return live
}

// compact rewrites the offsets log as a snapshot once it holds many more
// records than live state (see statelog.Log.Compact).
func (c *Coordinator) compact() error {
	if _, err := c.log.Compact(&c.mu, c.writeSnapshotLocked); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}

// writeSnapshotLocked adds the live state to a snapshot: every group's
// record and committed offsets, then the pending transactional offsets,
// each producer's in transactional batches so that a later marker still
// completes them. A pending offset already older than the committed one
// could never win and is dropped. Offsets learn their new log positions as
// their batches land.
func (c *Coordinator) writeSnapshotLocked(s *statelog.Snapshot) {
	groups := c.sortedGroupsLocked()
	pids := map[int64]int16{}
	for _, g := range groups {
		// Before any position changes: drop pending offsets that lost.
		for pid, p := range g.pendingTxn {
			for tp, o := range p.offsets {
				if cur, ok := g.offsets[tp]; ok && cur.pos > o.pos {
					delete(p.offsets, tp)
				}
			}
			if len(p.offsets) == 0 {
				delete(g.pendingTxn, pid)
				continue
			}
			pids[pid] = p.epoch
		}
	}
	for _, g := range groups {
		if g.consumer != nil {
			s.Add(statelog.Batch{}, consumerGroupRecord(g), nil)
			for _, m := range g.consumer.sortedMembers() {
				s.Add(statelog.Batch{}, consumerMemberRecord(g.id, m), nil)
			}
		} else {
			s.Add(statelog.Batch{}, groupRecordLocked(g), nil)
		}
		for _, tp := range sortedPartitions(g.offsets) {
			s.Add(statelog.Batch{}, offsetRecord(g.id, tp, g.offsets[tp]),
				func(pos int64) { o := g.offsets[tp]; o.pos = pos; g.offsets[tp] = o })
		}
	}
	for _, pid := range slices.Sorted(maps.Keys(pids)) {
		b := statelog.Batch{Transactional: true, ProducerID: pid, ProducerEpoch: pids[pid]}
		for _, g := range groups {
			p := g.pendingTxn[pid]
			if p == nil {
				continue
			}
			for _, tp := range sortedPartitions(p.offsets) {
				s.Add(b, offsetRecord(g.id, tp, p.offsets[tp]),
					func(pos int64) { o := p.offsets[tp]; o.pos = pos; p.offsets[tp] = o })
			}
		}
	}
}
