package group

import (
	"encoding/binary"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/statelog"
)

// The offsets log holds Kafka's own __consumer_offsets records in v2 record
// batches, the on-disk format of topic data:
//
//	key version 1 (OffsetCommitKey: group, topic, partition) → OffsetCommitValue v3
//	key version 2 (GroupMetadataKey: group)                  → GroupMetadataValue v3
//
// A nil value is a tombstone. Replaying the log from its start in order
// rebuilds exactly the coordinator's committed offsets and group records; the
// coordinator keeps that equality as an invariant (memory is updated under
// c.mu in the same critical section that appends the records), which is what
// lets compaction snapshot memory and drop the log below the snapshot (see
// internal/statelog).

const (
	keyOffsetCommit = 1
	keyGroup        = 2
	valueOffset     = 3
	valueGroup      = 3
)

func offsetKey(group string, tp TopicPartition) []byte {
	k := kmsg.OffsetCommitKey{Version: keyOffsetCommit, Group: group, Topic: tp.Topic, Partition: tp.Partition}
	return k.AppendTo(nil)
}

func offsetRecord(group string, tp TopicPartition, o Offset) statelog.Record {
	v := kmsg.NewOffsetCommitValue()
	v.Version = valueOffset
	v.Offset = o.Offset
	v.LeaderEpoch = o.LeaderEpoch
	v.Metadata = o.Metadata
	v.CommitTimestamp = o.CommitTime.UnixMilli()
	return statelog.Record{Key: offsetKey(group, tp), Value: v.AppendTo(nil)}
}

func offsetTombstone(group string, tp TopicPartition) statelog.Record {
	return statelog.Record{Key: offsetKey(group, tp)}
}

func groupKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: keyGroup, Group: group}
	return k.AppendTo(nil)
}

// groupRecordLocked persists what must outlive a restart: the generation (so
// ids are never reused), the protocol type, and when the group last changed
// state. A Stable group's record also carries its members with their
// subscriptions and assignments, so that after a restart they go on
// heartbeating and committing in the same generation, without a rebalance
// (Kafka does the same). The three shapes, told apart on replay:
//
//	members listed             Stable: restore the members
//	no members, Protocol set   rebalancing: Empty; the retention clock starts at replay
//	no members, Protocol nil   Empty since CurrentStateTimestamp (KIP-211)
func groupRecordLocked(g *group) statelog.Record {
	v := kmsg.NewGroupMetadataValue()
	v.Version = valueGroup
	v.ProtocolType = g.protocolType
	v.Generation = g.generation
	if g.protocol != "" {
		v.Protocol = kmsg.StringPtr(g.protocol)
	}
	if g.leader != "" {
		v.Leader = kmsg.StringPtr(g.leader)
	}
	v.CurrentStateTimestamp = g.stateTime.UnixMilli()
	if g.state != Stable {
		return statelog.Record{Key: groupKey(g.id), Value: v.AppendTo(nil)}
	}
	for _, m := range g.sortedMembersLocked() {
		gm := kmsg.NewGroupMetadataValueMember()
		gm.MemberID = m.id
		if m.instanceID != "" {
			gm.InstanceID = kmsg.StringPtr(m.instanceID)
		}
		gm.ClientID = m.clientID
		gm.ClientHost = m.clientHost
		gm.RebalanceTimeoutMillis = int32(m.rebalanceTimeout / time.Millisecond)
		gm.SessionTimeoutMillis = int32(m.sessionTimeout / time.Millisecond)
		gm.Subscription = m.metadataFor(g.protocol)
		gm.Assignment = m.assignment
		v.Members = append(v.Members, gm)
	}
	return statelog.Record{Key: groupKey(g.id), Value: v.AppendTo(nil)}
}

func groupTombstone(group string) statelog.Record { return statelog.Record{Key: groupKey(group)} }

// applyRecordLocked applies one replayed record (at log position pos) to
// memory. Records of transactional batches are pending offsets of their
// producer; a control batch's marker commits or aborts them.
func (c *Coordinator) applyRecordLocked(b statelog.Batch, pos int64, r statelog.Record, now time.Time) error {
	if b.Control {
		var k kmsg.ControlRecordKey
		if err := k.ReadFrom(r.Key); err != nil {
			return statelog.ErrUnknownRecord
		}
		switch k.Type {
		case kmsg.ControlRecordKeyTypeCommit:
			c.completeTxnLocked(b.ProducerID, true)
		case kmsg.ControlRecordKeyTypeAbort:
			c.completeTxnLocked(b.ProducerID, false)
		}
		return nil
	}
	if len(r.Key) < 2 {
		return statelog.ErrUnknownRecord
	}
	switch int16(binary.BigEndian.Uint16(r.Key)) {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(r.Key); err != nil {
			return err
		}
		tp := TopicPartition{Topic: k.Topic, Partition: k.Partition}
		if r.Value == nil {
			if g := c.groups[k.Group]; g != nil && !b.Transactional {
				delete(g.offsets, tp)
			}
			return nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(r.Value); err != nil {
			return err
		}
		g := c.groups[k.Group]
		if g == nil {
			g = c.newGroupLocked(k.Group, now)
		}
		epoch := v.LeaderEpoch
		if v.Version < 3 {
			epoch = -1
		}
		o := Offset{Offset: v.Offset, LeaderEpoch: epoch, Metadata: v.Metadata, CommitTime: time.UnixMilli(v.CommitTimestamp), pos: pos}
		if b.Transactional {
			g.addPendingLocked(b.ProducerID, b.ProducerEpoch, tp, o)
		} else {
			g.offsets[tp] = o
		}
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(r.Key); err != nil {
			return err
		}
		if r.Value == nil {
			delete(c.groups, k.Group)
			return nil
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(r.Value); err != nil {
			return err
		}
		g := c.groups[k.Group]
		if g == nil {
			g = c.newGroupLocked(k.Group, now)
		}
		c.restoreGroupLocked(g, &v, now)
	case keyConsumerGroup, keyConsumerMember:
		return c.applyConsumerRecordLocked(int16(binary.BigEndian.Uint16(r.Key)), r, now)
	default:
		return statelog.ErrUnknownRecord
	}
	return nil
}

// restoreGroupLocked applies a replayed group record (see groupRecordLocked
// for its three shapes). Restored members get a fresh session: those that do
// not come back expire and the group rebalances without them.
func (c *Coordinator) restoreGroupLocked(g *group, v *kmsg.GroupMetadataValue, now time.Time) {
	g.generation = v.Generation
	g.protocolType = v.ProtocolType
	g.members = make(map[string]*member)
	g.static = make(map[string]string)
	g.protocol, g.leader = "", ""
	g.state = Empty
	switch {
	case len(v.Members) > 0:
		g.protocol = deref(v.Protocol)
		g.leader = deref(v.Leader)
		g.state = Stable
		g.stateTime = now
		for _, vm := range v.Members {
			c.seq++
			m := &member{
				id:               vm.MemberID,
				instanceID:       deref(vm.InstanceID),
				clientID:         vm.ClientID,
				clientHost:       vm.ClientHost,
				sessionTimeout:   time.Duration(vm.SessionTimeoutMillis) * time.Millisecond,
				rebalanceTimeout: time.Duration(vm.RebalanceTimeoutMillis) * time.Millisecond,
				protocols:        []Protocol{{Name: g.protocol, Metadata: vm.Subscription}},
				assignment:       vm.Assignment,
				seq:              c.seq,
				synced:           true,
			}
			m.deadline = now.Add(m.sessionTimeout)
			g.members[m.id] = m
			if m.instanceID != "" {
				g.static[m.instanceID] = m.id
			}
		}
		if g.members[g.leader] == nil {
			// Cannot happen with records we wrote; rebalance rather than
			// serve a group without a leader.
			g.leader = ""
			g.state = PreparingRebalance
			g.joinDeadline = now.Add(g.maxRebalanceTimeoutLocked())
		}
	case v.Protocol != nil:
		g.emptySince = now
		g.stateTime = now
	default:
		g.emptySince = time.UnixMilli(v.CurrentStateTimestamp)
		g.stateTime = g.emptySince
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
