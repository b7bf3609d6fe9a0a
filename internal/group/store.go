package group

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/logstore"
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
// lets compaction snapshot memory and drop the log below the snapshot.

const (
	keyOffsetCommit = 1
	keyGroup        = 2
	valueOffset     = 3
	valueGroup      = 3

	// maxRecordsPerBatch bounds a snapshot batch so no single batch gets huge.
	maxRecordsPerBatch = 1000
)

// offsetLog is the part of *logstore.Log the coordinator uses. Offsets are
// log offsets (record positions), not consumer offsets.
type offsetLog interface {
	// Append writes one batch and returns the log end offset after it.
	Append(batch []byte) (end int64, err error)
	// WaitDurable returns once every record below end is fsynced.
	WaitDurable(ctx context.Context, end int64) error
	EndOffset() int64
	StartOffset() int64
	// DeleteBefore drops whole batches below offset (used after a snapshot).
	DeleteBefore(offset int64) error
	// Scan calls fn with every batch from offset on, in order.
	Scan(from int64, fn func(batch []byte) error) error
	Close() error
}

// storeLog adapts *logstore.Log to offsetLog.
type storeLog struct{ l *logstore.Log }

func (s storeLog) Append(batch []byte) (int64, error) {
	info, err := s.l.Append(batch)
	if err != nil {
		return 0, err
	}
	return info.LastOffset + 1, nil
}
func (s storeLog) WaitDurable(ctx context.Context, end int64) error {
	return s.l.WaitDurable(ctx, end)
}
func (s storeLog) EndOffset() int64                { return s.l.EndOffset() }
func (s storeLog) StartOffset() int64              { return s.l.StartOffset() }
func (s storeLog) DeleteBefore(offset int64) error { return s.l.DeleteBefore(offset) }
func (s storeLog) Close() error                    { return s.l.Close() }
func (s storeLog) Scan(from int64, fn func([]byte) error) error {
	return s.l.Scan(from, func(_ logstore.BatchHeader, b []byte) error { return fn(b) })
}

// logRecord is one key/value of the offsets log; value nil is a tombstone.
type logRecord struct{ key, value []byte }

func offsetKey(group string, tp TopicPartition) []byte {
	k := kmsg.OffsetCommitKey{Version: keyOffsetCommit, Group: group, Topic: tp.Topic, Partition: tp.Partition}
	return k.AppendTo(nil)
}

func offsetRecord(group string, tp TopicPartition, o Offset) logRecord {
	v := kmsg.NewOffsetCommitValue()
	v.Version = valueOffset
	v.Offset = o.Offset
	v.LeaderEpoch = o.LeaderEpoch
	v.Metadata = o.Metadata
	v.CommitTimestamp = o.CommitTime.UnixMilli()
	return logRecord{key: offsetKey(group, tp), value: v.AppendTo(nil)}
}

func offsetTombstone(group string, tp TopicPartition) logRecord {
	return logRecord{key: offsetKey(group, tp)}
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
func groupRecordLocked(g *group) logRecord {
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
		return logRecord{key: groupKey(g.id), value: v.AppendTo(nil)}
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
	return logRecord{key: groupKey(g.id), value: v.AppendTo(nil)}
}

func groupTombstone(group string) logRecord { return logRecord{key: groupKey(group)} }

// encodeBatch builds one v2 record batch holding recs, CRC included.
func encodeBatch(recs []logRecord, now time.Time) []byte {
	return encodeBatchAs(recs, now, 0, -1, -1)
}

const (
	attrTransactional = 0x10
	attrControl       = 0x20
)

// encodeBatchAs builds a batch with the given attributes and producer, as
// transactional offset commits and their markers need (Kafka writes them to
// __consumer_offsets the same way).
func encodeBatchAs(recs []logRecord, now time.Time, attrs int16, pid int64, epoch int16) []byte {
	out := make([]logstore.Record, len(recs))
	for i, r := range recs {
		out[i] = logstore.Record{Key: r.key, Value: r.value}
	}
	return logstore.EncodeBatch(out, now.UnixMilli(), attrs, pid, epoch)
}

// decodeBatch calls fn for every record of one batch read back from the
// log, with the batch header and the record's log position.
func decodeBatch(b []byte, fn func(h logstore.BatchHeader, pos int64, r logRecord) error) error {
	return logstore.DecodeRecords(b, func(h logstore.BatchHeader, pos int64, r logstore.Record) error {
		return fn(h, pos, logRecord{key: r.Key, value: r.Value})
	})
}

// errUnknownRecord is logged and skipped on replay: a record from a newer
// version of idem must not make an older one refuse to start.
var errUnknownRecord = errors.New("group: unknown offsets-log record")

// applyRecordLocked applies one replayed record (at log position pos) to
// memory. Records of transactional batches are pending offsets of their
// producer; a control batch's marker commits or aborts them.
func (c *Coordinator) applyRecordLocked(h logstore.BatchHeader, pos int64, r logRecord, now time.Time) error {
	if h.IsControl() {
		var k kmsg.ControlRecordKey
		if err := k.ReadFrom(r.key); err != nil {
			return errUnknownRecord
		}
		switch k.Type {
		case kmsg.ControlRecordKeyTypeCommit:
			c.completeTxnLocked(h.ProducerID, true)
		case kmsg.ControlRecordKeyTypeAbort:
			c.completeTxnLocked(h.ProducerID, false)
		}
		return nil
	}
	if len(r.key) < 2 {
		return errUnknownRecord
	}
	switch int16(binary.BigEndian.Uint16(r.key)) {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(r.key); err != nil {
			return err
		}
		tp := TopicPartition{Topic: k.Topic, Partition: k.Partition}
		if r.value == nil {
			if g := c.groups[k.Group]; g != nil && !h.IsTransactional() {
				delete(g.offsets, tp)
			}
			return nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(r.value); err != nil {
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
		if h.IsTransactional() {
			g.addPendingLocked(h.ProducerID, h.ProducerEpoch, tp, o)
		} else {
			g.offsets[tp] = o
		}
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(r.key); err != nil {
			return err
		}
		if r.value == nil {
			delete(c.groups, k.Group)
			return nil
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(r.value); err != nil {
			return err
		}
		g := c.groups[k.Group]
		if g == nil {
			g = c.newGroupLocked(k.Group, now)
		}
		c.restoreGroupLocked(g, &v, now)
	default:
		return errUnknownRecord
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

// replay rebuilds memory from the whole log; called before the coordinator
// is shared, so it takes c.mu only to keep the Locked convention honest.
func (c *Coordinator) replay() error {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var skipped int
	err := c.log.Scan(c.log.StartOffset(), func(b []byte) error {
		return decodeBatch(b, func(h logstore.BatchHeader, pos int64, r logRecord) error {
			c.logRecords++
			err := c.applyRecordLocked(h, pos, r, now)
			if errors.Is(err, errUnknownRecord) {
				skipped++
				return nil
			}
			return err
		})
	})
	if skipped > 0 {
		c.logger.Warn("skipped unknown records in the offsets log", "count", skipped)
	}
	return err
}

// appendLocked writes recs as one batch and returns the log end offset to
// wait for; record i lands at position end-len(recs)+i. Called with c.mu held
// so log order matches memory order.
func (c *Coordinator) appendLocked(recs []logRecord) (int64, error) {
	return c.appendAsLocked(recs, 0, -1, -1)
}

func (c *Coordinator) appendAsLocked(recs []logRecord, attrs int16, pid int64, epoch int16) (int64, error) {
	if len(recs) == 0 {
		return c.log.EndOffset(), nil
	}
	end, err := c.log.Append(encodeBatchAs(recs, c.now(), attrs, pid, epoch))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	c.logRecords += len(recs)
	// Counting live records walks every group, so do it only every so
	// often rather than on each commit.
	if c.logRecords >= c.compactCheckAt {
		c.compactCheckAt = c.logRecords + max(c.cfg.CompactRecords/8, 1)
		if c.logRecords > c.compactThresholdLocked() {
			c.kick()
		}
	}
	return end, nil
}

// appendBestEffortLocked appends records whose loss in a crash is harmless
// (group records, expiry tombstones): they are replayed consistently if they
// made it and the state they describe is rebuilt conservatively if not.
func (c *Coordinator) appendBestEffortLocked(recs []logRecord) {
	if _, err := c.appendLocked(recs); err != nil {
		c.logger.Error("offsets log append failed", "err", err)
	}
}

// compactThresholdLocked is how many records the log may hold before it is
// rewritten as a snapshot: twice the live records, and at least
// Config.CompactRecords so small groups do not rewrite constantly.
func (c *Coordinator) compactThresholdLocked() int {
	live := len(c.groups)
	for _, g := range c.groups {
		live += len(g.offsets)
	}
	return max(2*live, c.cfg.CompactRecords)
}

// compact rewrites the live state as a snapshot at the log end, waits for it
// to be durable, then deletes the log below it. A crash at any point leaves a
// log whose in-order replay gives the same state: the snapshot only repeats
// what the records before it already say. Pending transactional offsets are
// written after the committed ones, each producer's in a transactional batch,
// so a later marker still completes them; a pending offset already older than
// the committed one could never win and is dropped.
func (c *Coordinator) compact() error {
	c.mu.Lock()
	// The first test is cheap and usually decides; counting live records
	// walks every group.
	if c.closed || c.logRecords <= c.cfg.CompactRecords || c.logRecords <= c.compactThresholdLocked() {
		c.mu.Unlock()
		return nil
	}
	start := c.log.EndOffset()
	var (
		recs []logRecord
		sets []func(pos int64) // sets[i] records where recs[i] landed
		end  int64
		n    int
	)
	flush := func(attrs int16, pid int64, epoch int16) error {
		if len(recs) == 0 {
			return nil
		}
		e, err := c.log.Append(encodeBatchAs(recs, c.now(), attrs, pid, epoch))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
		base := e - int64(len(recs))
		for i, set := range sets {
			if set != nil {
				set(base + int64(i))
			}
		}
		end, n, recs, sets = e, n+len(recs), recs[:0], sets[:0]
		return nil
	}
	fail := func(err error) error {
		c.mu.Unlock()
		return err
	}
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
		recs, sets = append(recs, groupRecordLocked(g)), append(sets, nil)
		for _, tp := range sortedPartitions(g.offsets) {
			recs = append(recs, offsetRecord(g.id, tp, g.offsets[tp]))
			sets = append(sets, func(pos int64) { o := g.offsets[tp]; o.pos = pos; g.offsets[tp] = o })
			if len(recs) >= maxRecordsPerBatch {
				if err := flush(0, -1, -1); err != nil {
					return fail(err)
				}
			}
		}
	}
	if err := flush(0, -1, -1); err != nil {
		return fail(err)
	}
	for _, pid := range slices.Sorted(maps.Keys(pids)) {
		for _, g := range groups {
			p := g.pendingTxn[pid]
			if p == nil {
				continue
			}
			for _, tp := range sortedPartitions(p.offsets) {
				recs = append(recs, offsetRecord(g.id, tp, p.offsets[tp]))
				sets = append(sets, func(pos int64) { o := p.offsets[tp]; o.pos = pos; p.offsets[tp] = o })
			}
		}
		if err := flush(attrTransactional, pid, pids[pid]); err != nil {
			return fail(err)
		}
	}
	c.logRecords = n
	c.mu.Unlock()
	if n > 0 {
		if err := c.log.WaitDurable(context.Background(), end); err != nil {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
	}
	if err := c.log.DeleteBefore(start); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	c.logger.Debug("compacted the offsets log", "snapshot_records", n, "start", start)
	return nil
}
