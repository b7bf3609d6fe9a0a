package txn

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/idem-dev/idem/internal/statelog"
)

// replay rebuilds memory from the whole log. It runs before the coordinator
// is shared.
func (c *Coordinator) replay() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.Replay(func(_ statelog.Batch, _ int64, r statelog.Record) error {
		id, s, err := decodeRecord(r)
		if err != nil {
			return err
		}
		c.installLocked(id, s)
		return nil
	})
}

// installLocked makes s the state of id (nil or Dead removes it) and keeps
// the producer-id index in step.
func (c *Coordinator) installLocked(id string, s *txnState) {
	t := c.txns[id]
	if t != nil {
		c.unindexLocked(t)
	}
	if s == nil || s.state == Dead {
		delete(c.txns, id)
		return
	}
	if t == nil {
		t = &txnMeta{id: id}
		c.txns[id] = t
	}
	t.s = *s
	c.byPID[t.s.pid] = t
	for _, pid := range []int64{t.s.lastPID, t.s.nextPID} {
		if pid >= 0 && pid != t.s.pid {
			c.byPID[pid] = t
		}
	}
}

func (c *Coordinator) unindexLocked(t *txnMeta) {
	for _, pid := range []int64{t.s.pid, t.s.lastPID, t.s.nextPID} {
		if c.byPID[pid] == t {
			delete(c.byPID, pid)
		}
	}
}

// writeLocked appends the record for id's new state s (nil: tombstone) and,
// only if that worked, installs s in memory. It returns the log offset to
// wait for before the change may be acknowledged.
func (c *Coordinator) writeLocked(id string, s *txnState) (int64, error) {
	if s != nil && s.state == Dead {
		s = nil
	}
	end, err := c.log.Append(statelog.Batch{}, []statelog.Record{encodeRecord(id, s)})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	c.installLocked(id, s)
	return end, nil
}

// awaitDurable waits until the record below end is fsynced, then clears
// t's busy mark. It does not take the request's context: the record is in
// the log either way, and memory already says so.
func (c *Coordinator) awaitDurable(t *txnMeta, end int64) error {
	err := c.log.WaitDurable(context.Background(), end)
	c.mu.Lock()
	t.busy = false
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}

// compact rewrites the log as a snapshot of every transactional id's state
// once it holds many more records than there are ids (see
// statelog.Log.Compact).
func (c *Coordinator) compact() error {
	_, err := c.log.Compact(&c.mu, func(s *statelog.Snapshot) {
		for _, id := range slices.Sorted(maps.Keys(c.txns)) {
			st := c.txns[id].s
			s.Add(statelog.Batch{}, encodeRecord(id, &st), nil)
		}
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}
