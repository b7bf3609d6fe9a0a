package group

import "sort"

// CommittedOffset is one committed offset of a group, for metrics.
type CommittedOffset struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
}

// GroupRebalances is how often a group rebalanced since it was loaded or
// created: completed joins of a classic group, group epoch bumps of a
// consumer-protocol group (a member joined, left or changed its
// subscription). The count lives in memory only: it starts at 0 again
// after a restart.
type GroupRebalances struct {
	Group string
	Count int64
}

// Snapshot returns up to limit committed offsets (transactional offsets not
// yet committed are left out) and the number left out beyond limit, and
// every group's rebalance count. It holds the coordinator's lock only to
// copy, never waits for the log, and allocates in proportion to what it
// returns; the order is by group, then topic and partition, so the offsets
// that fit under limit are the same from one scrape to the next.
func (c *Coordinator) Snapshot(limit int) (offsets []CommittedOffset, skipped int, rebalances []GroupRebalances) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, 0, nil
	}
	ids := make([]string, 0, len(c.groups))
	for id := range c.groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := c.groups[id]
		rebalances = append(rebalances, GroupRebalances{Group: id, Count: g.rebalances})
		if len(offsets)+len(g.offsets) > limit {
			skipped += len(g.offsets) // whole groups: a group's lag is all there or not at all
			continue
		}
		for _, tp := range sortedPartitions(g.offsets) {
			offsets = append(offsets, CommittedOffset{Group: id, Topic: tp.Topic, Partition: tp.Partition, Offset: g.offsets[tp].Offset})
		}
	}
	return offsets, skipped, rebalances
}
