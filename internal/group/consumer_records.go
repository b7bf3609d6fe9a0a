package group

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/idem-dev/idem/internal/statelog"
)

// Records of KIP-848 consumer groups in the offsets log, beside Kafka's
// classic ones (records.go). The keys use Kafka's __consumer_offsets key
// versions for the same things, with its key layout (version, then
// length-prefixed strings):
//
//	key version 3 (group)          → the group: epochs, assignor, subscription metadata hash,
//	                                 when it became empty
//	key version 5 (group, member)  → one member: identity, subscription, epochs, state,
//	                                 assigned (with the epoch each partition came at),
//	                                 revoking and target partitions
//
// Kafka spreads the same state over more record kinds (keys 3 to 8); idem
// keeps one record per group and one per member, in its own value layout
// (value version 0, below). A nil value is a tombstone: key 3's turns the
// group back into a classic one, key 5's removes the member. An idem that
// predates these records skips them on replay (statelog.ErrUnknownRecord),
// keeping the group's offsets, which are ordinary offset records.
const (
	keyConsumerGroup  = 3
	keyConsumerMember = 5

	consumerValueVersion = 0
)

// errBadConsumerRecord is a consumer-group record that does not decode.
var errBadConsumerRecord = errors.New("group: malformed consumer group record")

type recordWriter struct{ b []byte }

func (w *recordWriter) i8(v int8)   { w.b = append(w.b, byte(v)) }
func (w *recordWriter) i16(v int16) { w.b = binary.BigEndian.AppendUint16(w.b, uint16(v)) }
func (w *recordWriter) i32(v int32) { w.b = binary.BigEndian.AppendUint32(w.b, uint32(v)) }
func (w *recordWriter) u64(v uint64) {
	w.b = binary.BigEndian.AppendUint64(w.b, v)
}
func (w *recordWriter) str(s string) {
	w.i16(int16(min(len(s), math.MaxInt16)))
	w.b = append(w.b, s[:min(len(s), math.MaxInt16)]...)
}

// assignment writes a, with each partition's epoch when at is not nil.
func (w *recordWriter) assignment(a Assignment, at map[topicPartition]int32) {
	topics := a.sortedTopics()
	w.i32(int32(len(topics)))
	for _, t := range topics {
		w.b = append(w.b, t[:]...)
		w.i32(int32(len(a[t])))
		for _, p := range a[t] {
			w.i32(p)
			if at != nil {
				w.i32(at[topicPartition{t, p}])
			}
		}
	}
}

type recordReader struct {
	b   []byte
	bad bool
}

func (r *recordReader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *recordReader) i8() int8 {
	if b := r.take(1); b != nil {
		return int8(b[0])
	}
	return 0
}

func (r *recordReader) i16() int16 {
	if b := r.take(2); b != nil {
		return int16(binary.BigEndian.Uint16(b))
	}
	return 0
}

func (r *recordReader) i32() int32 {
	if b := r.take(4); b != nil {
		return int32(binary.BigEndian.Uint32(b))
	}
	return 0
}

func (r *recordReader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *recordReader) str() string { return string(r.take(int(r.i16()))) }

// count reads a length and refuses one the remaining bytes cannot hold
// (each element takes at least min bytes), so that a corrupt record cannot
// make replay allocate without bound.
func (r *recordReader) count(min int) int {
	n := int(r.i32())
	if n < 0 || n*min > len(r.b) {
		r.bad = true
		return 0
	}
	return n
}

func (r *recordReader) assignment(withEpochs bool) (Assignment, map[topicPartition]int32) {
	a := Assignment{}
	var at map[topicPartition]int32
	if withEpochs {
		at = map[topicPartition]int32{}
	}
	for range r.count(20) {
		var t TopicID
		copy(t[:], r.take(16))
		for range r.count(4) {
			tp := topicPartition{t, r.i32()}
			a.add(tp)
			if withEpochs {
				at[tp] = r.i32()
			}
		}
	}
	return a, at
}

func consumerKey(version int16, group string, member ...string) []byte {
	w := recordWriter{}
	w.i16(version)
	w.str(group)
	for _, m := range member {
		w.str(m)
	}
	return w.b
}

// consumerGroupRecord is g's group record.
func consumerGroupRecord(g *group) statelog.Record {
	cg := g.consumer
	w := recordWriter{}
	w.i16(consumerValueVersion)
	w.i32(cg.epoch)
	w.i32(cg.assignmentEpoch)
	w.u64(cg.metadataHash)
	w.str(cg.assignor)
	var emptySince int64 // when the group became empty (KIP-211's retention clock); 0 while it has members
	if len(cg.members) == 0 && !g.emptySince.IsZero() {
		emptySince = g.emptySince.UnixMilli()
	}
	w.u64(uint64(emptySince))
	return statelog.Record{Key: consumerKey(keyConsumerGroup, g.id), Value: w.b}
}

func consumerGroupTombstone(group string) statelog.Record {
	return statelog.Record{Key: consumerKey(keyConsumerGroup, group)}
}

// consumerMemberRecord is m's record.
func consumerMemberRecord(group string, m *consumerMember) statelog.Record {
	w := recordWriter{}
	w.i16(consumerValueVersion)
	w.str(m.instanceID)
	w.str(m.rackID)
	w.str(m.clientID)
	w.str(m.clientHost)
	w.i32(int32(min(m.rebalanceTimeout/time.Millisecond, math.MaxInt32)))
	w.str(m.assignor)
	w.i32(int32(len(m.topics)))
	for _, t := range m.topics {
		w.str(t)
	}
	w.str(m.regex)
	w.i32(m.epoch)
	w.i32(m.prevEpoch)
	w.i8(int8(m.state))
	w.assignment(m.assigned, m.assignedAt)
	w.assignment(m.revoking, nil)
	w.assignment(m.target, nil)
	return statelog.Record{Key: consumerKey(keyConsumerMember, group, m.id), Value: w.b}
}

func consumerMemberTombstone(group, member string) statelog.Record {
	return statelog.Record{Key: consumerKey(keyConsumerMember, group, member)}
}

// applyConsumerRecordLocked replays a key version 3 or 5 record.
func (c *Coordinator) applyConsumerRecordLocked(version int16, r statelog.Record, now time.Time) error {
	kr := recordReader{b: r.Key[2:]}
	groupID := kr.str()
	memberID := ""
	if version == keyConsumerMember {
		memberID = kr.str()
	}
	if kr.bad || len(kr.b) > 0 {
		return errBadConsumerRecord
	}
	g := c.groups[groupID]
	if r.Value == nil {
		switch {
		case g == nil || g.consumer == nil:
		case version == keyConsumerGroup:
			g.consumer = nil // back to a classic group
			g.setState(Empty, now)
		default:
			delete(g.consumer.members, memberID)
		}
		return nil
	}
	vr := recordReader{b: r.Value}
	if v := vr.i16(); v != consumerValueVersion {
		return statelog.ErrUnknownRecord // a newer idem's layout
	}
	if g == nil {
		g = c.newGroupLocked(groupID, now)
	}
	if g.consumer == nil {
		g.consumer = newConsumerGroup()
		g.protocolType = "consumer"
		g.members, g.static, g.pending = map[string]*member{}, map[string]string{}, map[string]time.Time{}
		g.emptySince = now
	}
	cg := g.consumer
	if version == keyConsumerGroup {
		cg.epoch = vr.i32()
		cg.assignmentEpoch = vr.i32()
		cg.metadataHash = vr.u64()
		cg.assignor = vr.str()
		if ms := int64(vr.u64()); ms > 0 {
			g.emptySince = time.UnixMilli(ms)
		}
	} else {
		m := &consumerMember{id: memberID}
		m.instanceID = vr.str()
		m.rackID = vr.str()
		m.clientID = vr.str()
		m.clientHost = vr.str()
		m.rebalanceTimeout = time.Duration(vr.i32()) * time.Millisecond
		m.assignor = vr.str()
		for range vr.count(2) {
			m.topics = append(m.topics, vr.str())
		}
		m.regex = vr.str()
		m.epoch = vr.i32()
		m.prevEpoch = vr.i32()
		m.state = memberState(vr.i8())
		m.assigned, m.assignedAt = vr.assignment(true)
		m.revoking, _ = vr.assignment(false)
		m.target, _ = vr.assignment(false)
		if m.regex != "" {
			re, err := compileSubscription(m.regex)
			if err != nil {
				return err
			}
			m.re = re
		}
		cg.members[memberID] = m
	}
	if vr.bad {
		return errBadConsumerRecord
	}
	return nil
}

// restoreConsumerGroupsLocked finishes the replay of consumer groups: the
// owner and instance maps are rebuilt from the members, every member gets a
// fresh session (and a fresh rebalance timeout if it was revoking), and
// each group's state is derived.
func (c *Coordinator) restoreConsumerGroupsLocked(now time.Time) {
	for _, g := range c.groups {
		cg := g.consumer
		if cg == nil {
			continue
		}
		cg.owners, cg.static = map[topicPartition]string{}, map[string]string{}
		for _, m := range cg.sortedMembers() {
			m.assigned.union(m.revoking).each(func(tp topicPartition) { cg.owners[tp] = m.id })
			if m.instanceID != "" {
				cg.static[m.instanceID] = m.id
			}
			m.deadline = now.Add(c.cfg.ConsumerSessionTimeout)
			if m.state == memberUnrevoked {
				m.revokeDeadline = now.Add(m.rebalanceTimeout)
			}
		}
		emptySince := g.emptySince
		g.state = Dead // so that the derived state is applied
		c.updateConsumerStateLocked(g, now)
		if len(cg.members) == 0 && !emptySince.IsZero() {
			g.emptySince = emptySince // the retention clock goes on from before the restart
		}
	}
}
