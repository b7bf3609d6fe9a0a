package share

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/idem-dev/idem/internal/statelog"
)

// replay rebuilds memory from the whole share log; called before the
// coordinator is shared.
func (c *Coordinator) replay() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.log.Replay(func(_ statelog.Batch, _ int64, r statelog.Record) error {
		return c.applyLocked(r)
	})
	if err != nil {
		return err
	}
	// Entries assigned before this start may already be in their
	// dead-letter partition: the writer looks for them first.
	for _, e := range c.dlq.entries {
		if e.status == dlqAssigned {
			e.scan = true
		}
		c.dlq.next++
		e.order = c.dlq.next
	}
	now := c.now()
	for _, g := range c.groups {
		for _, sp := range g.sps {
			if ti, ok := c.cfg.Topics.ByID(sp.tp.id); ok {
				sp.topic = ti.Name
			}
		}
		// Members come back with a fresh session timeout and the
		// assignment of the group's epoch, which they already have.
		st := c.settingsLocked(g.id)
		c.assignLocked(g)
		for _, m := range g.members {
			m.deadline, m.sentEpoch = now.Add(st.sessionTimeout), m.epoch
		}
	}
	return nil
}

func (c *Coordinator) groupForReplayLocked(id string) *group {
	g := c.groups[id]
	if g == nil {
		g = newGroup(id)
		c.groups[id] = g
	}
	return g
}

// applyLocked applies one record of the share log to memory.
func (c *Coordinator) applyLocked(r statelog.Record) error {
	d := dec{b: r.Key}
	typ := d.i16()
	switch typ {
	case rtConfig:
		rt, name := d.i8(), d.str()
		if err := d.done(); err != nil {
			return err
		}
		key := resourceKey{rt, name}
		if r.Value == nil {
			delete(c.configs, key)
			return nil
		}
		v := dec{b: r.Value}
		if ver := v.i16(); ver != 0 && v.err == nil {
			return fmt.Errorf("%w: config version %d", statelog.ErrUnknownRecord, ver)
		}
		n := v.count(4)
		kv := make(map[string]string, n)
		for range n {
			k := v.str()
			kv[k] = v.str()
		}
		if err := v.done(); err != nil {
			return err
		}
		c.configs[key] = kv
	case rtGroup:
		id := d.str()
		if err := d.done(); err != nil {
			return err
		}
		if r.Value == nil {
			if g := c.groups[id]; g != nil {
				for _, sp := range g.sps {
					sp.deleted = true
				}
				delete(c.groups, id)
			}
			return nil
		}
		v := dec{b: r.Value}
		v.i16()
		epoch := v.i32()
		if err := v.done(); err != nil {
			return err
		}
		g := c.groupForReplayLocked(id)
		g.epoch = max(g.epoch, epoch)
	case rtState:
		id := d.str()
		tp := topicPartition{d.id(), d.i32()}
		if err := d.done(); err != nil {
			return err
		}
		g := c.groupForReplayLocked(id)
		if r.Value == nil {
			if sp := g.sps[tp]; sp != nil {
				sp.deleted = true
				delete(g.sps, tp)
			}
			return nil
		}
		full, spso, runs, err := decodeState(r.Value)
		if err != nil {
			return err
		}
		sp := g.sps[tp]
		if sp == nil {
			sp = &sharePartition{g: g, tp: tp, spso: spso}
			g.sps[tp] = sp
		}
		sp.apply(full, spso, runs)
	case rtDLQ:
		key := dlqEntryKey{d.str(), topicPartition{d.id(), d.i32()}, d.i64()}
		if err := d.done(); err != nil {
			return err
		}
		if r.Value == nil {
			delete(c.dlq.entries, key)
			return nil
		}
		e, err := decodeDLQEntry(key, r.Value)
		if err != nil {
			return err
		}
		if e.status == dlqDone {
			delete(c.dlq.entries, key)
			return nil
		}
		c.dlq.entries[key] = e
	case rtProducer:
		if err := d.done(); err != nil {
			return err
		}
		v := dec{b: r.Value}
		v.i16()
		c.dlq.pid, c.dlq.epoch = v.i64(), v.i16()
		return v.done()
	case rtMember:
		gid, mid := d.str(), d.str()
		if err := d.done(); err != nil {
			return err
		}
		g := c.groupForReplayLocked(gid)
		if r.Value == nil {
			delete(g.members, mid)
			return nil
		}
		m, err := decodeMember(mid, r.Value)
		if err != nil {
			return err
		}
		g.members[mid] = m
		g.joins = max(g.joins, m.joinSeq)
	case rtSeq:
		tp := topicPartition{d.id(), d.i32()}
		if err := d.done(); err != nil {
			return err
		}
		v := dec{b: r.Value}
		v.i16()
		c.dlq.seqs[tp] = v.i32()
		return v.done()
	default:
		return fmt.Errorf("%w: share record type %d", statelog.ErrUnknownRecord, typ)
	}
	return nil
}

// liveRecordsLocked is how many records a snapshot would write now.
func (c *Coordinator) liveRecordsLocked() int {
	n := len(c.configs) + len(c.dlq.seqs) + len(c.dlq.entries) + 1
	for _, g := range c.groups {
		n += 1 + len(g.sps) + len(g.members)
	}
	return n
}

// writeSnapshotLocked adds the live state to a snapshot: the dead-letter
// producer and sequences, configs, then each group with its share
// partitions in full, then the dead-letter entries not yet done. Share
// partitions of deleted topics are dropped here.
func (c *Coordinator) writeSnapshotLocked(s *statelog.Snapshot) {
	if c.dlq.pid >= 0 {
		s.Add(statelog.Batch{}, producerRecord(c.dlq.pid, c.dlq.epoch), nil)
	}
	seqs := sortedKeysFunc(c.dlq.seqs, topicPartition.compare)
	for _, tp := range seqs {
		s.Add(statelog.Batch{}, seqRecord(tp, c.dlq.seqs[tp]), nil)
	}
	keys := sortedKeysFunc(c.configs, func(a, b resourceKey) int {
		return cmp.Or(cmp.Compare(a.typ, b.typ), cmp.Compare(a.name, b.name))
	})
	for _, k := range keys {
		s.Add(statelog.Batch{}, configRecord(k.typ, k.name, c.configs[k]), nil)
	}
	for _, id := range sortedKeys(c.groups) {
		g := c.groups[id]
		s.Add(statelog.Batch{}, groupRecord(g.id, g.epoch, false), nil)
		for _, id := range sortedKeys(g.members) {
			s.Add(statelog.Batch{}, memberRecord(g.id, g.members[id], false), nil)
		}
		for _, tp := range sortedKeysFunc(g.sps, topicPartition.compare) {
			sp := g.sps[tp]
			if _, ok := c.cfg.Topics.ByID(tp.id); !ok {
				sp.deleted = true
				delete(g.sps, tp)
				continue
			}
			s.Add(statelog.Batch{}, stateRecord(g.id, tp, true, sp.spso, sp.runs(), false), nil)
		}
	}
	entries := slices.SortedFunc(mapValues(c.dlq.entries), func(a, b *dlqEntry) int { return cmp.Compare(a.order, b.order) })
	for _, e := range entries {
		s.Add(statelog.Batch{}, e.record(), nil)
	}
}
