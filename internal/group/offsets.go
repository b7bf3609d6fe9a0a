package group

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/statelog"
)

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Offset is a committed offset.
type Offset struct {
	Offset      int64
	LeaderEpoch int32 // -1 when unknown
	Metadata    string
	CommitTime  time.Time
	// Unstable (FetchOffsets only): a transactional commit for this
	// partition is pending; with RequireStable the answer is
	// UNSTABLE_OFFSET_COMMIT. Offset is -1 if nothing is committed yet.
	Unstable bool

	pos int64 // log position of the record; the later of two commits wins
}

// OffsetCommit is one partition of an OffsetCommit request.
type OffsetCommit struct {
	Topic       string
	Partition   int32
	Offset      int64
	LeaderEpoch int32
	Metadata    string
}

// CommitRequest is an OffsetCommit. Generation -1 with no member id is a
// "simple" commit, allowed only while the group has no members.
type CommitRequest struct {
	Group      string
	MemberID   string
	InstanceID string
	Generation int32 // the member epoch for consumer-protocol groups
	Offsets    []OffsetCommit
	// KnowsMemberEpochs is set for OffsetCommit v9+: older versions are
	// refused to members of consumer-protocol groups (KIP-848).
	KnowsMemberEpochs bool
}

func sortedPartitions(m map[TopicPartition]Offset) []TopicPartition {
	tps := make([]TopicPartition, 0, len(m))
	for tp := range m {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		if c := cmp.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return cmp.Compare(a.Partition, b.Partition)
	})
	return tps
}

// validateCommitLocked applies Kafka's classic rules: a simple commit needs
// an Empty group; otherwise member and generation must match, and a commit
// waits out CompletingRebalance (the assignment may be about to change).
func (g *group) validateCommitLocked(req CommitRequest) (*member, error) {
	if g.consumer != nil {
		_, err := g.consumer.validateCommitLocked(req.MemberID, req.Generation, req.KnowsMemberEpochs, false, req.Offsets)
		return nil, err
	}
	if req.Generation < 0 && req.MemberID == "" && req.InstanceID == "" {
		if g.state == Empty {
			return nil, nil
		}
		return nil, ErrUnknownMember
	}
	m, err := g.validateMemberLocked(req.MemberID, req.InstanceID)
	if err != nil {
		return nil, err
	}
	if req.Generation != g.generation {
		return nil, ErrIllegalGeneration
	}
	if g.state == CompletingRebalance {
		return nil, ErrRebalanceInProgress
	}
	return m, nil
}

// CommitOffsets validates and stores offsets and returns once they are
// durable (fsynced). The slice has one error (or nil) per entry of
// req.Offsets; a group-level error rejects them all.
func (c *Coordinator) CommitOffsets(ctx context.Context, req CommitRequest) ([]error, error) {
	if req.Group == "" {
		return nil, ErrInvalidGroupID
	}
	now := c.now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	g := c.groups[req.Group]
	if g == nil {
		if req.Generation >= 0 || req.MemberID != "" {
			c.mu.Unlock()
			return nil, ErrIllegalGeneration
		}
		g = c.newGroupLocked(req.Group, now)
	}
	m, err := g.validateCommitLocked(req)
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	if m != nil {
		m.deadline = now.Add(m.sessionTimeout) // a commit proves the member alive
	}
	errs := make([]error, len(req.Offsets))
	var recs []statelog.Record
	var apply []OffsetCommit
	for i, o := range req.Offsets {
		if len(o.Metadata) > c.cfg.MaxMetadataBytes {
			errs[i] = ErrOffsetMetadataTooLarge
			continue
		}
		tp := TopicPartition{o.Topic, o.Partition}
		recs = append(recs, offsetRecord(g.id, tp, Offset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTime: now}))
		apply = append(apply, o)
	}
	end, err := c.appendLocked(recs)
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	base := end - int64(len(recs))
	for i, o := range apply {
		g.offsets[TopicPartition{o.Topic, o.Partition}] = Offset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTime: now, pos: base + int64(i)}
	}
	c.mu.Unlock()
	if err := c.waitDurable(ctx, end); err != nil {
		return nil, err
	}
	return errs, nil
}

// waitDurable waits for the offsets log to be fsynced below end.
func (c *Coordinator) waitDurable(ctx context.Context, end int64) error {
	if err := c.log.WaitDurable(ctx, end); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}

// FetchOffsets returns the group's committed offsets (none for an unknown
// group). Memory runs ahead of the disk by the commits still waiting for
// their fsync, so it first waits until everything it could return is durable:
// a consumer must never start from an offset that a power loss takes back.
func (c *Coordinator) FetchOffsets(ctx context.Context, groupID string) (map[TopicPartition]Offset, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	out := map[TopicPartition]Offset{}
	if g := c.groups[groupID]; g != nil {
		for tp, o := range g.offsets {
			out[tp] = o
		}
		for _, p := range g.pendingTxn {
			for tp := range p.offsets {
				o, ok := out[tp]
				if !ok {
					o = Offset{Offset: -1, LeaderEpoch: -1}
				}
				o.Unstable = true
				out[tp] = o
			}
		}
	}
	end := c.log.End()
	c.mu.Unlock()
	if err := c.waitDurable(ctx, end); err != nil {
		return nil, err
	}
	return out, nil
}

// subscribedTopicsLocked returns the topics the members of a live "consumer"
// group subscribe to, parsed from their protocol metadata; ok is false when
// that cannot be told (another protocol type or unreadable metadata).
func (g *group) subscribedTopicsLocked() (topics map[string]bool, ok bool) {
	if g.consumer != nil {
		return g.consumer.subscribedTopicNames(), true
	}
	topics = map[string]bool{}
	if len(g.members) == 0 {
		return topics, true
	}
	if g.protocolType != "consumer" {
		return nil, false
	}
	for _, m := range g.members {
		var meta kmsg.ConsumerMemberMetadata
		if err := meta.ReadFrom(m.metadataFor(g.protocol)); err != nil {
			return nil, false
		}
		for _, t := range meta.Topics {
			topics[t] = true
		}
	}
	return topics, true
}

// DeleteOffsets removes committed offsets (OffsetDelete). A live group may
// only lose offsets of topics it does not subscribe to.
func (c *Coordinator) DeleteOffsets(ctx context.Context, groupID string, tps []TopicPartition) ([]error, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	g := c.groups[groupID]
	if g == nil {
		c.mu.Unlock()
		return nil, ErrGroupNotFound
	}
	subscribed, ok := g.subscribedTopicsLocked()
	if !ok {
		c.mu.Unlock()
		return nil, ErrNonEmptyGroup
	}
	errs := make([]error, len(tps))
	var recs []statelog.Record
	for i, tp := range tps {
		if subscribed[tp.Topic] {
			errs[i] = ErrSubscribedToTopic
			continue
		}
		if _, ok := g.offsets[tp]; ok {
			recs = append(recs, offsetTombstone(g.id, tp))
			delete(g.offsets, tp)
		}
	}
	end, err := c.appendLocked(recs)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := c.waitDurable(ctx, end); err != nil {
		return nil, err
	}
	return errs, nil
}

// DeleteGroups deletes groups that have no members, with their offsets, and
// returns once that is durable; one error (or nil) per group.
func (c *Coordinator) DeleteGroups(ctx context.Context, ids []string) []error {
	errs := make([]error, len(ids))
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		for i := range errs {
			errs[i] = ErrClosed
		}
		return errs
	}
	var recs []statelog.Record
	var deleted []int
	for i, id := range ids {
		g := c.groups[id]
		switch {
		case id == "":
			errs[i] = ErrInvalidGroupID
		case g == nil:
			errs[i] = ErrGroupNotFound
		case len(g.members) > 0 || g.state != Empty || (g.consumer != nil && len(g.consumer.members) > 0):
			errs[i] = ErrNonEmptyGroup
		default:
			recs = append(recs, c.deleteGroupLocked(g)...)
			deleted = append(deleted, i)
		}
	}
	end, err := c.appendLocked(recs)
	c.mu.Unlock()
	if err == nil {
		err = c.waitDurable(ctx, end)
	}
	if err != nil {
		for _, i := range deleted {
			errs[i] = err
		}
	}
	return errs
}

// deleteGroupLocked removes g from memory and returns the tombstones that
// remove it from the log.
func (c *Coordinator) deleteGroupLocked(g *group) []statelog.Record {
	var recs []statelog.Record
	for _, tp := range sortedPartitions(g.offsets) {
		recs = append(recs, offsetTombstone(g.id, tp))
	}
	if cg := g.consumer; cg != nil {
		for _, m := range cg.sortedMembers() {
			recs = append(recs, consumerMemberTombstone(g.id, m.id))
		}
		recs = append(recs, consumerGroupTombstone(g.id))
		g.consumer = nil
	}
	recs = append(recs, groupTombstone(g.id))
	for _, m := range g.members {
		c.removeMemberLocked(g, m, ErrUnknownMember)
	}
	g.setState(Dead, c.now())
	delete(c.groups, g.id)
	return recs
}

// expireOffsetsLocked applies offsets.retention.minutes. A group that has
// had members expires all its offsets once it has been Empty for the
// retention time (KIP-211); a standalone group (commits with generation -1
// only) expires each offset by its commit time; a Stable consumer group keeps
// the offsets of the topics it subscribes to and expires the others by commit
// time (KIP-496). An Empty group left with no offsets is deleted.
func (c *Coordinator) expireOffsetsLocked(now time.Time) {
	retention := c.cfg.OffsetsRetention
	var recs []statelog.Record
	for _, g := range c.sortedGroupsLocked() {
		live := g.state == Stable && g.protocolType == "consumer"
		if g.consumer != nil {
			live = len(g.consumer.members) > 0
		}
		if live {
			// KIP-496: a live consumer group's offsets for topics it no
			// longer subscribes to expire by their commit time.
			if subscribed, ok := g.subscribedTopicsLocked(); ok {
				for _, tp := range sortedPartitions(g.offsets) {
					if !subscribed[tp.Topic] && now.Sub(g.offsets[tp].CommitTime) >= retention {
						recs = append(recs, offsetTombstone(g.id, tp))
						delete(g.offsets, tp)
					}
				}
			}
			continue
		}
		if g.state != Empty || len(g.members) > 0 || len(g.pending) > 0 {
			continue
		}
		groupBased := (g.protocolType != "" || g.consumer != nil) && !g.emptySince.IsZero()
		for _, tp := range sortedPartitions(g.offsets) {
			base := g.offsets[tp].CommitTime
			if groupBased {
				base = g.emptySince
			}
			if now.Sub(base) >= retention {
				recs = append(recs, offsetTombstone(g.id, tp))
				delete(g.offsets, tp)
			}
		}
		if len(g.offsets) == 0 && len(g.pendingTxn) == 0 {
			c.logger.Info("removing empty group", "group", g.id)
			recs = append(recs, c.deleteGroupLocked(g)...)
		}
	}
	c.appendBestEffortLocked(recs)
}

// GroupListing is one ListGroups entry.
type GroupListing struct {
	Group        string
	ProtocolType string
	State        State
	Type         string // "classic" or "consumer" (ListGroups v5)
}

// ListGroups lists the groups, optionally only those in the given states
// and of the given types ("classic", "consumer"; case-insensitive, as
// Kafka's ListGroups v5 filter).
func (c *Coordinator) ListGroups(states []State, types ...string) []GroupListing {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []GroupListing
	for _, g := range c.sortedGroupsLocked() {
		if len(states) > 0 && !slices.Contains(states, g.state) {
			continue
		}
		if len(types) > 0 && !slices.ContainsFunc(types, func(t string) bool { return equalFold(t, g.typeName()) }) {
			continue
		}
		out = append(out, GroupListing{g.id, g.protocolType, g.state, g.typeName()})
	}
	return out
}

// MemberDescription is one member in DescribeGroups.
type MemberDescription struct {
	MemberID, InstanceID, ClientID, ClientHost string
	Metadata, Assignment                       []byte
}

// GroupDescription is one DescribeGroups entry. An unknown group is reported
// as Dead with no members, as Kafka does.
type GroupDescription struct {
	Group        string
	State        State
	ProtocolType string
	Protocol     string
	Members      []MemberDescription
	// Type is "consumer" for a KIP-848 group, which DescribeGroups does
	// not describe (ConsumerGroupDescribe does); else "classic".
	Type string
}

// DescribeGroup describes a group; metadata and assignments are included
// only when the group is Stable (before that they are not settled).
func (c *Coordinator) DescribeGroup(id string) GroupDescription {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[id]
	if g == nil {
		return GroupDescription{Group: id, State: Dead, Type: "classic"}
	}
	d := GroupDescription{Group: id, State: g.state, ProtocolType: g.protocolType, Type: g.typeName()}
	if g.state == Stable {
		d.Protocol = g.protocol
	}
	for _, m := range g.sortedMembersLocked() {
		md := MemberDescription{MemberID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost}
		if g.state == Stable {
			md.Metadata = m.metadataFor(g.protocol)
			md.Assignment = m.assignment
		}
		d.Members = append(d.Members, md)
	}
	return d
}

// DeleteTopicOffsets removes every group's committed offsets for the given
// topics, as Kafka does when a topic is deleted: a topic re-created under the
// same name must not inherit offsets that point into the old one. The broker
// calls it from DeleteTopics; it returns once the removal is durable.
func (c *Coordinator) DeleteTopicOffsets(ctx context.Context, topics []string) error {
	gone := make(map[string]bool, len(topics))
	for _, t := range topics {
		gone[t] = true
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	var recs []statelog.Record
	for _, g := range c.sortedGroupsLocked() {
		for _, tp := range sortedPartitions(g.offsets) {
			if gone[tp.Topic] {
				recs = append(recs, offsetTombstone(g.id, tp))
				delete(g.offsets, tp)
			}
		}
	}
	end, err := c.appendLocked(recs)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitDurable(ctx, end)
}
