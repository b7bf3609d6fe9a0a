package share

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/idem-dev/idem/internal/statelog"
)

// GroupListing is one share group in ListGroups.
type GroupListing struct {
	Group string
	State string // Empty or Stable
}

// ListGroups lists the share groups, sorted by id.
func (c *Coordinator) ListGroups() []GroupListing {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]GroupListing, 0, len(c.groups))
	for _, id := range sortedKeys(c.groups) {
		out = append(out, GroupListing{Group: id, State: c.groups[id].stateLocked()})
	}
	return out
}

// IsGroup reports whether id is a share group.
func (c *Coordinator) IsGroup(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.groups[id] != nil
}

// MemberDescription is one member in DescribeGroup.
type MemberDescription struct {
	MemberID, ClientID, Host string
	RackID                   *string
	MemberEpoch              int32
	Subscribed               []string
	Assignment               map[[16]byte][]int32
}

// GroupDescription is ShareGroupDescribe's view of a group.
type GroupDescription struct {
	Group   string
	State   string
	Epoch   int32
	Members []MemberDescription
}

// DescribeGroup describes a share group; ErrGroupNotFound if it is none.
func (c *Coordinator) DescribeGroup(id string) (GroupDescription, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[id]
	if g == nil {
		return GroupDescription{}, ErrGroupNotFound
	}
	d := GroupDescription{Group: id, State: g.stateLocked(), Epoch: g.epoch}
	ms := slices.SortedFunc(maps.Values(g.members), func(a, b *member) int { return int(a.joinSeq - b.joinSeq) })
	for _, m := range ms {
		d.Members = append(d.Members, MemberDescription{
			MemberID: m.id, ClientID: m.clientID, Host: m.host, RackID: m.rack, MemberEpoch: m.epoch,
			Subscribed: slices.Clone(m.subscribed), Assignment: copyAssignment(m.assignment),
		})
	}
	return d, nil
}

// PartitionOffsets is one share partition's progress.
type PartitionOffsets struct {
	TopicID   [16]byte
	Topic     string
	Partition int32
	// StartOffset is the SPSO, or -1 when the group has no state for it.
	StartOffset int64
	// Lag is the records not yet terminal: high watermark − SPSO − the
	// terminal records inside the window (KIP-1226); -1 without state.
	Lag int64
	// In-flight detail for `idem share describe`.
	EndOffset                         int64 // end of the in-flight window
	Acquired, Available, Acknowledged int
	Archived                          int
	DeliveryCounts                    map[int16]int // non-terminal records by delivery count
	HighWatermark                     int64
	Holders                           map[string]int // member → records it holds
	DelayedUntilMs                    int64          // latest delayed-retry time in the window
	ArchivingForDLQ, PendingDLQ       int
}

// DescribeOffsets returns the group's share partitions (those in tps, or all
// when tps is nil); a partition without state has StartOffset -1.
func (c *Coordinator) DescribeOffsets(groupID string, tps []TopicPartition) ([]PartitionOffsets, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[groupID]
	if g == nil {
		return nil, ErrGroupNotFound
	}
	if tps == nil {
		for _, tp := range sortedKeysFunc(g.sps, topicPartition.compare) {
			tps = append(tps, TopicPartition{tp.id, tp.partition})
		}
	}
	var out []PartitionOffsets
	for _, tp := range tps {
		k := topicPartition{tp.TopicID, tp.Partition}
		po := PartitionOffsets{TopicID: tp.TopicID, Partition: tp.Partition, StartOffset: -1, Lag: -1, HighWatermark: -1}
		ti, ok := c.cfg.Topics.ByID(tp.TopicID)
		if ok {
			po.Topic = ti.Name
			if p, err := c.cfg.Topics.Partition(ti.Name, tp.Partition); err == nil {
				po.HighWatermark = p.HighWatermark()
			}
		}
		if sp := g.sps[k]; sp != nil {
			c.fillOffsetsLocked(sp, &po)
		}
		out = append(out, po)
	}
	return out, nil
}

func (c *Coordinator) fillOffsetsLocked(sp *sharePartition, po *PartitionOffsets) {
	po.StartOffset, po.EndOffset = sp.spso, sp.end()
	po.DeliveryCounts = map[int16]int{}
	po.Holders = map[string]int{}
	terminal := 0
	for i := range sp.recs {
		r := &sp.recs[i]
		switch r.state {
		case stAcquired:
			po.Acquired++
			po.DeliveryCounts[r.count]++
			if r.owner != nil {
				po.Holders[r.owner.key.member]++
			}
		case stAvailable:
			po.Available++
			if r.count > 0 {
				po.DeliveryCounts[r.count]++
			}
			po.DelayedUntilMs = max(po.DelayedUntilMs, r.availAt)
		case stAcknowledged:
			po.Acknowledged++
			terminal++
		case stArchiving:
			po.ArchivingForDLQ++
			terminal++
		case stArchived:
			po.Archived++
			terminal++
		}
	}
	if po.HighWatermark >= 0 {
		po.Lag = max(po.HighWatermark-sp.spso-int64(terminal), 0)
	}
	for _, e := range c.dlq.entries {
		if e.key.group == sp.g.id && e.key.tp == sp.tp {
			po.PendingDLQ++
		}
	}
}

// AlterOffsets sets the start offset of share partitions of an empty group
// (creating the group if it does not exist): each partition's in-flight
// state is dropped and delivery restarts at the offset. It returns one error
// per entry of offsets (nil for success) once the change is durable.
func (c *Coordinator) AlterOffsets(ctx context.Context, groupID string, offsets []PartitionOffset) ([]error, error) {
	if groupID == "" {
		return nil, ErrInvalidGroupID
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	g := c.groups[groupID]
	if g != nil && len(g.members) > 0 {
		c.mu.Unlock()
		return nil, ErrNonEmptyGroup
	}
	var recs []statelog.Record
	if g == nil {
		g = newGroup(groupID)
		c.groups[groupID] = g
		recs = append(recs, groupRecord(groupID, 0, false))
	}
	errs := make([]error, len(offsets))
	for i, o := range offsets {
		tp := topicPartition{o.TopicID, o.Partition}
		ti, ok := c.cfg.Topics.ByID(o.TopicID)
		if !ok || o.Partition < 0 || o.Partition >= ti.Partitions {
			errs[i] = ErrUnknownTopic
			continue
		}
		if o.Offset < 0 {
			errs[i] = fmt.Errorf("%w: start offset %d", ErrInvalidRequest, o.Offset)
			continue
		}
		if sp := g.sps[tp]; sp != nil {
			sp.deleted = true
		}
		sp := &sharePartition{g: g, tp: tp, topic: ti.Name, spso: o.Offset}
		g.sps[tp] = sp
		recs = append(recs, stateRecord(g.id, tp, true, o.Offset, nil, false))
	}
	end, err := c.appendLocked(recs)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return errs, c.waitDurable(ctx, end)
}

// PartitionOffset is a partition and an offset.
type PartitionOffset struct {
	TopicID   [16]byte
	Partition int32
	Offset    int64
}

// DeleteOffsets drops an empty group's state for the given topics (all
// their partitions). It returns one error per topic once durable.
func (c *Coordinator) DeleteOffsets(ctx context.Context, groupID string, topicIDs [][16]byte) ([]error, error) {
	c.mu.Lock()
	g := c.groups[groupID]
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, ErrClosed
	case g == nil:
		c.mu.Unlock()
		return nil, ErrGroupNotFound
	case len(g.members) > 0:
		c.mu.Unlock()
		return nil, ErrNonEmptyGroup
	}
	errs := make([]error, len(topicIDs))
	var recs []statelog.Record
	for i, id := range topicIDs {
		if _, ok := c.cfg.Topics.ByID(id); !ok {
			errs[i] = ErrUnknownTopic
			continue
		}
		for _, tp := range sortedKeysFunc(g.sps, topicPartition.compare) {
			if tp.id == id {
				g.sps[tp].deleted = true
				delete(g.sps, tp)
				recs = append(recs, stateRecord(g.id, tp, false, 0, nil, true))
			}
		}
	}
	end, err := c.appendLocked(recs)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return errs, c.waitDurable(ctx, end)
}

// DeleteGroup deletes an empty share group with its state and its group
// configs, durably.
func (c *Coordinator) DeleteGroup(ctx context.Context, id string) error {
	c.mu.Lock()
	g := c.groups[id]
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case g == nil:
		c.mu.Unlock()
		return ErrGroupNotFound
	case len(g.members) > 0:
		c.mu.Unlock()
		return ErrNonEmptyGroup
	}
	for _, sp := range g.sps {
		sp.deleted = true
	}
	delete(c.groups, id)
	recs := []statelog.Record{groupRecord(id, 0, true)}
	if _, ok := c.configs[resourceKey{ResourceGroup, id}]; ok {
		delete(c.configs, resourceKey{ResourceGroup, id})
		recs = append(recs, configRecord(ResourceGroup, id, nil))
	}
	end, err := c.appendLocked(recs)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.logger.Info("share group deleted", "group", id)
	return c.waitDurable(ctx, end)
}

// DeleteGroupConfigs drops the group configs of a group id (DeleteGroups of
// a classic group: its configs go with it).
func (c *Coordinator) DeleteGroupConfigs(ctx context.Context, id string) error {
	c.mu.Lock()
	if _, ok := c.configs[resourceKey{ResourceGroup, id}]; !ok {
		c.mu.Unlock()
		return nil
	}
	delete(c.configs, resourceKey{ResourceGroup, id})
	end, err := c.appendLocked([]statelog.Record{configRecord(ResourceGroup, id, nil)})
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitDurable(ctx, end)
}

// TopicName resolves a topic id.
func (c *Coordinator) TopicName(id [16]byte) (string, bool) {
	ti, ok := c.cfg.Topics.ByID(id)
	return ti.Name, ok
}

// TopicID resolves a topic name.
func (c *Coordinator) TopicID(name string) ([16]byte, int32, bool) {
	ti, ok := c.cfg.Topics.ByName(name)
	return ti.ID, ti.Partitions, ok
}

// LockTimeout is a group's acquisition lock duration
// (AcquisitionLockTimeoutMillis).
func (c *Coordinator) LockTimeout(group string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settingsLocked(group).lockDuration
}
