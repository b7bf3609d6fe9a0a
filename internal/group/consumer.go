package group

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/idem-dev/idem/internal/statelog"
)

// KIP-848 consumer groups: the "consumer" rebalance protocol, in which the
// coordinator computes the assignment and members reconcile it one
// heartbeat at a time (ConsumerGroupHeartbeat), instead of stopping the
// world for a JoinGroup/SyncGroup round.
//
// A group has a group epoch, bumped whenever what the assignment depends on
// changes (members, their subscriptions, the subscribed topics'
// partitions), and a target assignment computed at an assignment epoch.
// Each member has a member epoch and moves to the target epoch on its own,
// as Kafka's CurrentAssignmentBuilder does:
//
//   - partitions it must give up are revoked first: the member keeps its
//     epoch, is told its smaller assignment, and stays in "unrevoked" until a
//     heartbeat reports it no longer owns them (or its rebalance timeout
//     fences it);
//   - then it moves to the target epoch and gets the partitions of its
//     target that nobody else holds any more; those still held by another
//     member wait ("unreleased") until that member revokes them.
//
// So a partition is never held by two members at once. Member epochs fence
// everything else: a heartbeat, OffsetCommit or OffsetFetch with an epoch
// the coordinator did not give the member is refused.
//
// Durability: the group (epochs, assignor, subscription metadata hash) and
// each member (identity, subscription, epochs, state, assigned, revoking and
// target partitions) are records in the offsets log (records.go), written
// before the heartbeat is answered, so a restart resumes every member where
// it was without a rebalance. Sessions start afresh after a restart.

// Consumer-group states, named as Kafka names them in ListGroups and
// ConsumerGroupDescribe (Empty, Stable and Dead are shared with classic
// groups).
const (
	// Assigning: the group epoch moved; the next heartbeat computes a new
	// target assignment.
	Assigning State = iota + Dead + 1
	// Reconciling: some member has not reached the target assignment.
	Reconciling
)

// memberState is a consumer-protocol member's reconciliation state
// (Kafka's MemberState).
type memberState int8

const (
	memberStable     memberState = iota // at the target epoch with every partition of its target it can have
	memberUnrevoked                     // must confirm it gave up partitions before moving on
	memberUnreleased                    // at the target epoch, waiting for partitions others still hold
)

// leftStatic is the member epoch of a static member that left with epoch
// -2: it keeps its place and partitions until its session expires or its
// instance rejoins (KIP-848's temporary leave).
const leftStatic = -2

// consumerMember is one member of a consumer-protocol group. Guarded by
// Coordinator.mu.
type consumerMember struct {
	id, instanceID, rackID string
	clientID, clientHost   string
	rebalanceTimeout       time.Duration
	assignor               string   // the server assignor it asked for ("" = the group's)
	topics                 []string // subscribed topic names, sorted
	regex                  string   // subscribed regular expression ("" = none), as sent
	re                     *regexp.Regexp

	epoch, prevEpoch int32
	state            memberState
	assigned         Assignment // what it owns as far as the coordinator knows
	revoking         Assignment // what it must give up (still owned meanwhile)
	target           Assignment // its share of the group's target assignment
	// assignedAt is the member epoch at which each assigned partition
	// became this member's (KIP-1251: a commit at an older epoch is
	// accepted for partitions the member had then and still has).
	assignedAt map[topicPartition]int32

	deadline       time.Time // session expiry
	revokeDeadline time.Time // rebalance timeout while unrevoked; zero otherwise
}

// consumerGroup is the consumer-protocol half of a group (group.consumer
// is nil for classic groups). Guarded by Coordinator.mu.
type consumerGroup struct {
	epoch           int32 // group epoch
	assignmentEpoch int32 // epoch of the current target assignment
	assignor        string
	metadataHash    uint64 // of the subscribed topics at the last bump
	members         map[string]*consumerMember
	static          map[string]string // instance id → member id
	// owners maps each partition some member owns or is revoking to it.
	owners map[topicPartition]string
	// topics is the last topic snapshot a heartbeat brought: what timers
	// and offset commits resolve names and ids with.
	topics *Topics
	// topicsFingerprint is the snapshot's fingerprint when metadataHash
	// was last computed (not persisted: a restart computes it again).
	topicsFingerprint uint64
}

func newConsumerGroup() *consumerGroup {
	return &consumerGroup{
		members: map[string]*consumerMember{},
		static:  map[string]string{},
		owners:  map[topicPartition]string{},
		topics:  NewTopics(nil),
	}
}

// TopicInfo describes one topic for KIP-848 assignment.
type TopicInfo struct {
	Name       string
	ID         TopicID
	Partitions int32
}

// Topics is a snapshot of the broker's topics that the API layer builds for
// every ConsumerGroupHeartbeat: the coordinator knows no topics of its own.
type Topics struct {
	byName map[string]TopicInfo
	byID   map[TopicID]string
	names  []string // sorted, for regular expressions
	// fingerprint changes whenever a topic is created, deleted or given
	// partitions: a group re-resolves its subscriptions only then.
	fingerprint uint64
}

// NewTopics indexes a topic list.
func NewTopics(list []TopicInfo) *Topics {
	t := &Topics{byName: map[string]TopicInfo{}, byID: map[TopicID]string{}}
	for _, ti := range list {
		t.byName[ti.Name] = ti
		t.byID[ti.ID] = ti.Name
		t.names = append(t.names, ti.Name)
	}
	slices.Sort(t.names)
	h := fnv.New64a()
	for _, n := range t.names {
		ti := t.byName[n]
		fmt.Fprintf(h, "%s\x00%x\x00%d\x00", n, ti.ID, ti.Partitions)
	}
	t.fingerprint = h.Sum64()
	return t
}

// Name returns the name of topic id ("" if unknown).
func (t *Topics) Name(id TopicID) string { return t.byID[id] }

// ID returns the id of topic name.
func (t *Topics) ID(name string) (TopicID, bool) {
	ti, ok := t.byName[name]
	return ti.ID, ok
}

// subscribed resolves m's subscription against topics: the ids of the
// existing topics it names or its regular expression matches (the whole
// name, as Kafka matches; internal topics included).
func (m *consumerMember) subscribed(topics *Topics) map[TopicID]bool {
	out := map[TopicID]bool{}
	for _, n := range m.topics {
		if ti, ok := topics.byName[n]; ok {
			out[ti.ID] = true
		}
	}
	if m.re != nil {
		for _, n := range topics.names {
			if m.re.MatchString(n) {
				out[topics.byName[n].ID] = true
			}
		}
	}
	return out
}

// compileSubscription compiles a subscription regex to match whole topic
// names (Kafka matches with RE2J's matches(); Go's RE2 is the same syntax).
func compileSubscription(regex string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(`^(?:` + regex + `)$`)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalidRegularExpression, regex, err)
	}
	return re, nil
}

// ConsumerHeartbeat is a ConsumerGroupHeartbeat. Nil or negative fields
// are "unchanged since the last heartbeat", as on the wire.
type ConsumerHeartbeat struct {
	Group       string
	MemberID    string // v1: chosen by the client; v0: "" on a first join
	MemberEpoch int32  // 0 join, -1 leave, -2 static (temporary) leave
	InstanceID  *string
	RackID      *string
	// RebalanceTimeout is how long the member may take to revoke
	// partitions; negative = not sent.
	RebalanceTimeout time.Duration
	SubscribedTopics []string // nil = unchanged
	SubscribedRegex  *string  // nil = unchanged; "" = none
	ServerAssignor   *string  // nil = unchanged
	Owned            Assignment
	OwnedSent        bool // Owned was sent (false = unchanged, a keepalive)
	ClientID         string
	ClientHost       string
}

// ConsumerHeartbeatResult answers a ConsumerGroupHeartbeat.
type ConsumerHeartbeatResult struct {
	MemberID          string
	MemberEpoch       int32
	HeartbeatInterval time.Duration
	// Assignment is the member's assignment; nil when the answer carries
	// none (nothing changed and the request was a keepalive).
	Assignment Assignment
}

// fullRequest reports whether req carries everything a member sends when
// something may have changed (Kafka's isFullRequest); the answer to it
// always carries the assignment.
func (req *ConsumerHeartbeat) fullRequest() bool {
	return req.MemberEpoch == 0 || (req.RebalanceTimeout >= 0 &&
		(req.SubscribedTopics != nil || req.SubscribedRegex != nil) && req.OwnedSent)
}

// validate applies Kafka's request checks (ConsumerGroupHeartbeat).
func (req *ConsumerHeartbeat) validate() error {
	switch {
	case req.Group == "":
		return fmt.Errorf("%w: empty group id", ErrInvalidGroupID)
	case req.MemberEpoch < leftStatic:
		return fmt.Errorf("%w: member epoch %d", ErrInvalidRequest, req.MemberEpoch)
	case req.MemberID == "" && req.MemberEpoch != 0:
		return fmt.Errorf("%w: member id can't be empty", ErrInvalidRequest)
	case req.InstanceID != nil && *req.InstanceID == "":
		return fmt.Errorf("%w: instance id can't be empty", ErrInvalidRequest)
	}
	if req.MemberEpoch == 0 {
		switch {
		case req.RebalanceTimeout < 0:
			return fmt.Errorf("%w: RebalanceTimeoutMs must be provided in the first request", ErrInvalidRequest)
		case !req.OwnedSent || req.Owned.count() > 0:
			return fmt.Errorf("%w: TopicPartitions must be empty when (re-)joining", ErrInvalidRequest)
		case len(req.SubscribedTopics) == 0 && (req.SubscribedRegex == nil || *req.SubscribedRegex == ""):
			return fmt.Errorf("%w: SubscribedTopicNames or SubscribedTopicRegex must be set in the first request", ErrInvalidRequest)
		}
	}
	if req.MemberEpoch == leftStatic && req.InstanceID == nil {
		return fmt.Errorf("%w: instance id can't be null for a static leave", ErrInvalidRequest)
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != "" {
		if _, ok := assignors[*req.ServerAssignor]; !ok {
			return fmt.Errorf("%w: %q", ErrUnsupportedAssignor, *req.ServerAssignor)
		}
	}
	if req.SubscribedRegex != nil && *req.SubscribedRegex != "" {
		if _, err := compileSubscription(*req.SubscribedRegex); err != nil {
			return err
		}
	}
	return nil
}

// ConsumerGroupHeartbeat runs one KIP-848 heartbeat: it joins, leaves or
// keeps a member alive, moves the group epoch when something the
// assignment depends on changed, recomputes the target assignment, and
// reconciles the member one step towards it. The answer comes once the
// records of whatever changed are durable. topics is the broker's topics
// now.
func (c *Coordinator) ConsumerGroupHeartbeat(ctx context.Context, req ConsumerHeartbeat, topics *Topics) (ConsumerHeartbeatResult, error) {
	if err := req.validate(); err != nil {
		return ConsumerHeartbeatResult{}, err
	}
	if topics == nil {
		topics = NewTopics(nil)
	}
	now := c.now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ConsumerHeartbeatResult{}, ErrClosed
	}
	var recs []statelog.Record
	res, err := c.consumerHeartbeatLocked(&req, topics, now, &recs)
	var end int64
	if err == nil || len(recs) > 0 {
		var aerr error
		if end, aerr = c.appendLocked(recs); aerr != nil {
			c.mu.Unlock()
			return ConsumerHeartbeatResult{}, aerr
		}
	}
	c.kick()
	c.mu.Unlock()
	if err != nil {
		return ConsumerHeartbeatResult{}, err
	}
	if len(recs) > 0 {
		if err := c.waitDurable(ctx, end); err != nil {
			return ConsumerHeartbeatResult{}, err
		}
	}
	res.HeartbeatInterval = c.cfg.ConsumerHeartbeatInterval
	return res, nil
}

// consumerGroupLocked finds or creates the consumer-protocol group a
// heartbeat names, converting an empty classic group (offsets kept) as
// Kafka does; a classic group with members is not a consumer group.
func (c *Coordinator) consumerGroupLocked(req *ConsumerHeartbeat, now time.Time, recs *[]statelog.Record) (*group, error) {
	g := c.groups[req.Group]
	if g != nil && g.consumer != nil {
		return g, nil
	}
	switch {
	case req.MemberEpoch < 0 && g == nil:
		return nil, fmt.Errorf("%w: %s", ErrGroupNotFound, req.Group)
	case req.MemberEpoch != 0 && g == nil:
		return nil, fmt.Errorf("%w: group %s does not exist", ErrUnknownMember, req.Group)
	case g != nil && !g.classicEmptyLocked():
		return nil, fmt.Errorf("%w: %s is a classic group with members", ErrGroupNotFound, req.Group)
	case req.MemberEpoch < 0:
		return nil, fmt.Errorf("%w: %s is a classic group", ErrGroupNotFound, req.Group)
	case req.MemberEpoch != 0:
		return nil, fmt.Errorf("%w: %s is a classic group", ErrUnknownMember, req.Group)
	}
	if g == nil {
		g = c.newGroupLocked(req.Group, now)
	}
	g.consumer = newConsumerGroup()
	g.protocolType = "consumer"
	g.emptySince = now
	g.setState(Empty, now)
	*recs = append(*recs, consumerGroupRecord(g))
	return g, nil
}

// classicEmptyLocked reports whether g is a classic group nobody is in or
// joining: one a consumer-protocol member may take over.
func (g *group) classicEmptyLocked() bool {
	return g.consumer == nil && len(g.members) == 0 && len(g.pending) == 0 && g.state == Empty
}

func (c *Coordinator) consumerHeartbeatLocked(req *ConsumerHeartbeat, topics *Topics, now time.Time, recs *[]statelog.Record) (ConsumerHeartbeatResult, error) {
	g, err := c.consumerGroupLocked(req, now, recs)
	if err != nil {
		return ConsumerHeartbeatResult{}, err
	}
	cg := g.consumer
	cg.topics = topics
	switch req.MemberEpoch {
	case -1:
		m := cg.members[req.MemberID]
		if m == nil {
			return ConsumerHeartbeatResult{}, fmt.Errorf("%w: %s", ErrUnknownMember, req.MemberID)
		}
		c.removeConsumerMemberLocked(g, m, now, recs)
		return ConsumerHeartbeatResult{MemberID: req.MemberID, MemberEpoch: -1}, nil
	case leftStatic:
		return c.staticLeaveLocked(g, req, now, recs)
	}
	m, joined, err := c.consumerMemberLocked(g, req, now, recs)
	if err != nil {
		return ConsumerHeartbeatResult{}, err
	}
	bump := joined
	if c.updateConsumerMemberLocked(m, req) {
		bump = true
	}
	m.deadline = now.Add(c.cfg.ConsumerSessionTimeout)
	// Resolving subscriptions (regular expressions against every topic) is
	// the costly part of a heartbeat: only when a subscription or a topic
	// changed.
	if bump || topics.fingerprint != cg.topicsFingerprint {
		cg.topicsFingerprint = topics.fingerprint
		if h := cg.subscriptionHash(topics); h != cg.metadataHash {
			cg.metadataHash = h
			bump = true
		}
	}
	if bump {
		cg.epoch++
		g.rebalances++
		*recs = append(*recs, consumerGroupRecord(g))
	}
	if cg.epoch > cg.assignmentEpoch {
		c.computeTargetLocked(g, recs)
	}
	before := m.assigned
	var owned Assignment
	if req.OwnedSent {
		owned = req.Owned
	}
	changed := c.reconcileLocked(cg, m, owned, now)
	if changed || bump || joined {
		*recs = append(*recs, consumerMemberRecord(g.id, m))
	}
	c.updateConsumerStateLocked(g, now)
	res := ConsumerHeartbeatResult{MemberID: m.id, MemberEpoch: m.epoch}
	if req.fullRequest() || !before.equal(m.assigned) || changed {
		res.Assignment = m.assigned
	}
	return res, nil
}

// consumerMemberLocked finds the member a heartbeat is for, creating it on a
// join. joined reports a member new to the group (its arrival moves the
// group epoch); a static member taking its own place back is not new.
func (c *Coordinator) consumerMemberLocked(g *group, req *ConsumerHeartbeat, now time.Time, recs *[]statelog.Record) (m *consumerMember, joined bool, err error) {
	cg := g.consumer
	instance := ""
	if req.InstanceID != nil {
		instance = *req.InstanceID
	}
	if req.MemberEpoch > 0 {
		m = cg.members[req.MemberID]
		if instance != "" {
			if holder, ok := cg.static[instance]; ok && holder != req.MemberID {
				return nil, false, fmt.Errorf("%w: instance %s belongs to %s", ErrFencedInstanceID, instance, holder)
			}
		}
		if m == nil {
			return nil, false, fmt.Errorf("%w: %s", ErrUnknownMember, req.MemberID)
		}
		if err := checkMemberEpoch(m, req); err != nil {
			return nil, false, err
		}
		return m, false, nil
	}
	// A join (epoch 0).
	id := req.MemberID
	if id == "" {
		id = c.cfg.memberID(req.ClientID) // ConsumerGroupHeartbeat v0
	}
	if instance != "" {
		if holder, ok := cg.static[instance]; ok && holder != id {
			old := cg.members[holder]
			if old != nil && old.epoch != leftStatic {
				return nil, false, fmt.Errorf("%w: %s is held by member %s", ErrUnreleasedInstanceID, instance, holder)
			}
			if old != nil {
				// The instance came back under a new member id: the new
				// member takes the old one's place and partitions, and
				// the old id is fenced.
				m = c.replaceStaticMemberLocked(g, old, id, recs)
				m.epoch = 0
				return m, false, nil
			}
		}
	}
	if m = cg.members[id]; m != nil {
		// A member rejoining with its own id (it was fenced, or lost an
		// answer): it keeps its place and gets its assignment again.
		if m.epoch == leftStatic {
			m.epoch = 0
		}
		return m, false, nil
	}
	if len(cg.members) >= c.cfg.ConsumerMaxSize {
		return nil, false, fmt.Errorf("%w: %d members", ErrGroupMaxSize, len(cg.members))
	}
	m = &consumerMember{
		id:         id,
		instanceID: instance,
		assigned:   Assignment{},
		revoking:   Assignment{},
		target:     Assignment{},
		assignedAt: map[topicPartition]int32{},
	}
	cg.members[id] = m
	if instance != "" {
		cg.static[instance] = id
	}
	return m, true, nil
}

// checkMemberEpoch fences a heartbeat whose epoch is not the member's. The
// previous epoch is accepted with owned partitions that are a subset of
// the member's: the answer that moved it on may have been lost (Kafka's
// throwIfMemberEpochIsInvalid).
func checkMemberEpoch(m *consumerMember, req *ConsumerHeartbeat) error {
	if req.MemberEpoch == m.epoch {
		return nil
	}
	if req.MemberEpoch < m.epoch && req.MemberEpoch == m.prevEpoch && req.OwnedSent &&
		req.Owned.filter(func(tp topicPartition) bool { return !m.assigned.has(tp) }).count() == 0 {
		return nil
	}
	return fmt.Errorf("%w: member %s is at epoch %d, the request at %d", ErrFencedMemberEpoch, m.id, m.epoch, req.MemberEpoch)
}

// updateConsumerMemberLocked applies the request's member fields and reports
// whether the subscription or the assignor changed.
func (c *Coordinator) updateConsumerMemberLocked(m *consumerMember, req *ConsumerHeartbeat) bool {
	m.clientID, m.clientHost = req.ClientID, req.ClientHost
	if req.RackID != nil {
		m.rackID = *req.RackID
	}
	if req.RebalanceTimeout >= 0 {
		m.rebalanceTimeout = req.RebalanceTimeout
	}
	changed := false
	if req.SubscribedTopics != nil {
		topics := slices.Clone(req.SubscribedTopics)
		slices.Sort(topics)
		topics = slices.Compact(topics)
		if !slices.Equal(topics, m.topics) {
			m.topics, changed = topics, true
		}
	}
	if req.SubscribedRegex != nil && *req.SubscribedRegex != m.regex {
		m.regex, m.re, changed = *req.SubscribedRegex, nil, true
		if m.regex != "" {
			m.re, _ = compileSubscription(m.regex) // validated
		}
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != m.assignor {
		m.assignor, changed = *req.ServerAssignor, true
	}
	return changed
}

// subscriptionHash fingerprints what the target assignment depends on
// besides the members: every subscribed topic's name, id and partition
// count. A topic created that a regex matches, one deleted or one given
// more partitions changes it, and the next heartbeat moves the group epoch
// (Kafka keeps the same hash).
func (cg *consumerGroup) subscriptionHash(topics *Topics) uint64 {
	ids := map[TopicID]bool{}
	for _, m := range cg.members {
		maps.Copy(ids, m.subscribed(topics))
	}
	h := fnv.New64a()
	for _, id := range slices.SortedFunc(maps.Keys(ids), cmpTopicID) {
		name := topics.Name(id)
		fmt.Fprintf(h, "%s\x00%x\x00%d\x00", name, id, topics.byName[name].Partitions)
	}
	return h.Sum64()
}

// groupAssignor is the assignor the group uses: the one most members ask
// for, else the first of ConsumerAssignors (Kafka's preferred assignor).
func (c *Coordinator) groupAssignorLocked(cg *consumerGroup) string {
	votes := map[string]int{}
	for _, m := range cg.members {
		if m.assignor != "" {
			votes[m.assignor]++
		}
	}
	best := c.cfg.ConsumerAssignors[0]
	for _, name := range slices.Sorted(maps.Keys(votes)) {
		if votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

// computeTargetLocked computes the target assignment at the group epoch
// and records every member whose target changed.
func (c *Coordinator) computeTargetLocked(g *group, recs *[]statelog.Record) {
	cg := g.consumer
	cg.assignor = c.groupAssignorLocked(cg)
	var members []assignMember
	partitions := map[TopicID]int32{}
	for _, m := range cg.sortedMembers() {
		subs := m.subscribed(cg.topics)
		for id := range subs {
			partitions[id] = cg.topics.byName[cg.topics.Name(id)].Partitions
		}
		members = append(members, assignMember{id: m.id, topics: subs, current: m.target})
	}
	targets := assignors[cg.assignor].assign(members, partitions)
	for i, am := range members {
		m := cg.members[am.id]
		if !targets[i].equal(m.target) {
			m.target = targets[i]
			*recs = append(*recs, consumerMemberRecord(g.id, m))
		}
	}
	cg.assignmentEpoch = cg.epoch
	*recs = append(*recs, consumerGroupRecord(g))
}

func (cg *consumerGroup) sortedMembers() []*consumerMember {
	return slices.SortedFunc(maps.Values(cg.members), func(a, b *consumerMember) int { return cmp.Compare(a.id, b.id) })
}

// reconcileLocked moves m one step towards its target (Kafka's
// CurrentAssignmentBuilder) and reports whether anything about it changed.
// owned is what the member reports owning (nil: not reported).
func (c *Coordinator) reconcileLocked(cg *consumerGroup, m *consumerMember, owned Assignment, now time.Time) bool {
	switch m.state {
	case memberStable:
		if m.epoch == cg.assignmentEpoch {
			return false
		}
	case memberUnrevoked:
		if owned == nil || ownsAny(owned, m.revoking) {
			return false // not yet: it must confirm it let go first
		}
		cg.release(m, m.revoking)
		m.revoking = Assignment{}
	case memberUnreleased:
	}
	return c.nextAssignmentLocked(cg, m, owned, now)
}

// nextAssignmentLocked computes m's next assignment from its target:
// revocations first (epoch unchanged); otherwise the target epoch with
// every partition of the target that is free.
func (c *Coordinator) nextAssignmentLocked(cg *consumerGroup, m *consumerMember, owned Assignment, now time.Time) bool {
	keep := m.assigned.filter(m.target.has)
	revoke := m.assigned.filter(func(tp topicPartition) bool { return !m.target.has(tp) })
	before := *m
	if revoke.count() > 0 && (owned == nil || ownsAny(owned, revoke)) {
		m.state = memberUnrevoked
		m.assigned, m.revoking = keep, revoke
		m.revokeDeadline = now.Add(m.rebalanceTimeout)
		return true
	}
	cg.release(m, revoke)
	grant := m.target.filter(func(tp topicPartition) bool {
		if keep.has(tp) {
			return false
		}
		owner, held := cg.owners[tp]
		return !held || owner == m.id
	})
	pending := m.target.count() - keep.count() - grant.count()
	if m.epoch != cg.assignmentEpoch {
		m.prevEpoch, m.epoch = m.epoch, cg.assignmentEpoch
	}
	grant.each(func(tp topicPartition) {
		cg.owners[tp] = m.id
		m.assignedAt[tp] = m.epoch
	})
	m.assigned = keep.union(grant)
	m.revoking = Assignment{}
	m.revokeDeadline = time.Time{}
	m.state = memberStable
	if pending > 0 {
		m.state = memberUnreleased
	}
	return before.epoch != m.epoch || before.state != m.state || !before.assigned.equal(m.assigned) || before.revoking.count() > 0
}

// ownsAny reports whether owned holds any partition of set.
func ownsAny(owned, set Assignment) bool {
	found := false
	set.each(func(tp topicPartition) { found = found || owned.has(tp) })
	return found
}

// release gives up m's hold on parts.
func (cg *consumerGroup) release(m *consumerMember, parts Assignment) {
	parts.each(func(tp topicPartition) {
		if cg.owners[tp] == m.id {
			delete(cg.owners, tp)
		}
		delete(m.assignedAt, tp)
	})
}

// removeConsumerMemberLocked takes m out of the group (a leave, an expired
// session, a missed rebalance timeout): its partitions are free for the
// others, and the group epoch moves so that the next heartbeat reassigns
// them.
func (c *Coordinator) removeConsumerMemberLocked(g *group, m *consumerMember, now time.Time, recs *[]statelog.Record) {
	cg := g.consumer
	cg.release(m, m.assigned.union(m.revoking))
	delete(cg.members, m.id)
	if m.instanceID != "" && cg.static[m.instanceID] == m.id {
		delete(cg.static, m.instanceID)
	}
	cg.epoch++
	g.rebalances++
	c.updateConsumerStateLocked(g, now)
	*recs = append(*recs, consumerMemberTombstone(g.id, m.id), consumerGroupRecord(g))
}

// staticLeaveLocked is a static member's temporary leave (epoch -2): it
// keeps its partitions and its place until its session expires, so that
// a restarted instance takes them back without a rebalance. A dynamic
// member leaving this way simply leaves.
func (c *Coordinator) staticLeaveLocked(g *group, req *ConsumerHeartbeat, now time.Time, recs *[]statelog.Record) (ConsumerHeartbeatResult, error) {
	cg := g.consumer
	m := cg.members[req.MemberID]
	if m == nil {
		return ConsumerHeartbeatResult{}, fmt.Errorf("%w: %s", ErrUnknownMember, req.MemberID)
	}
	if m.instanceID == "" {
		c.removeConsumerMemberLocked(g, m, now, recs)
		return ConsumerHeartbeatResult{MemberID: m.id, MemberEpoch: -1}, nil
	}
	if m.instanceID != *req.InstanceID {
		return ConsumerHeartbeatResult{}, fmt.Errorf("%w: member %s is instance %s", ErrFencedInstanceID, m.id, m.instanceID)
	}
	// Partitions it was giving up are free now; the rest stay its own.
	cg.release(m, m.revoking)
	m.revoking = Assignment{}
	m.revokeDeadline = time.Time{}
	m.epoch = leftStatic
	m.deadline = now.Add(c.cfg.ConsumerSessionTimeout)
	*recs = append(*recs, consumerMemberRecord(g.id, m))
	c.updateConsumerStateLocked(g, now)
	return ConsumerHeartbeatResult{MemberID: m.id, MemberEpoch: leftStatic}, nil
}

// replaceStaticMemberLocked gives old's place, partitions and target to a
// new member id of the same instance.
func (c *Coordinator) replaceStaticMemberLocked(g *group, old *consumerMember, id string, recs *[]statelog.Record) *consumerMember {
	cg := g.consumer
	m := &consumerMember{}
	*m = *old
	m.id = id
	m.assignedAt = maps.Clone(old.assignedAt)
	delete(cg.members, old.id)
	cg.members[id] = m
	cg.static[m.instanceID] = id
	m.assigned.union(m.revoking).each(func(tp topicPartition) {
		if cg.owners[tp] == old.id {
			cg.owners[tp] = id
		}
	})
	*recs = append(*recs, consumerMemberTombstone(g.id, old.id))
	return m
}

// updateConsumerStateLocked derives the group's state from its members, as
// Kafka does: Empty, Assigning (epoch ahead of the target), Reconciling
// (a member not at the target) or Stable.
func (c *Coordinator) updateConsumerStateLocked(g *group, now time.Time) {
	cg := g.consumer
	s := Stable
	switch {
	case len(cg.members) == 0:
		s = Empty
	case cg.epoch > cg.assignmentEpoch:
		s = Assigning
	default:
		for _, m := range cg.members {
			if m.epoch != leftStatic && (m.epoch != cg.assignmentEpoch || m.state != memberStable) {
				s = Reconciling
				break
			}
		}
	}
	if s != g.state {
		if s == Empty {
			g.emptySince = now
		}
		g.setState(s, now)
	}
}

// expireConsumerMembersLocked removes members whose session expired and
// members that did not revoke within their rebalance timeout.
func (c *Coordinator) expireConsumerMembersLocked(g *group, now time.Time, recs *[]statelog.Record) {
	for _, m := range g.consumer.sortedMembers() {
		switch {
		case !now.Before(m.deadline):
			c.logger.Info("consumer group member session expired", "group", g.id, "member", m.id)
		case !m.revokeDeadline.IsZero() && !now.Before(m.revokeDeadline):
			c.logger.Info("consumer group member did not revoke its partitions within its rebalance timeout", "group", g.id, "member", m.id)
		default:
			continue
		}
		c.removeConsumerMemberLocked(g, m, now, recs)
	}
}

// consumerDeadlineLocked is g's earliest consumer-member deadline.
func (cg *consumerGroup) nextDeadline(earlier func(time.Time)) {
	for _, m := range cg.members {
		earlier(m.deadline)
		earlier(m.revokeDeadline)
	}
}

// validateConsumerCommitLocked applies Kafka's rules for commits to a
// consumer-protocol group (ConsumerGroup.validateOffsetCommit): without a
// member (epoch < 0, no member id) only while the group has no members;
// otherwise the member must exist and commit at its epoch, or (KIP-1251) at
// an older epoch for partitions it has held since then. Transactional
// commits without member information pass.
func (cg *consumerGroup) validateCommitLocked(memberID string, epoch int32, knowsEpochs, transactional bool, offsets []OffsetCommit) (*consumerMember, error) {
	if epoch < 0 && memberID == "" {
		if transactional || len(cg.members) == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: the group has members", ErrUnknownMember)
	}
	m := cg.members[memberID]
	if m == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownMember, memberID)
	}
	if !transactional && !knowsEpochs {
		return nil, ErrUnsupportedVersion
	}
	if epoch == m.epoch {
		return m, nil
	}
	if epoch < m.epoch && epoch > 0 && !transactional {
		ok := true
		for _, o := range offsets {
			id, known := cg.topics.ID(o.Topic)
			at, held := m.assignedAt[topicPartition{id, o.Partition}]
			if !known || !held || at > epoch {
				ok = false
				break
			}
		}
		if ok {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w: member %s is at epoch %d, the commit at %d", ErrStaleMemberEpoch, memberID, m.epoch, epoch)
}

// CheckMemberEpoch is OffsetFetch v9's member check for consumer-protocol
// groups: an admin fetch (no member id, epoch < 0) passes, otherwise the
// member must exist (ErrUnknownMember) at that epoch (ErrStaleMemberEpoch).
// Classic groups and unknown groups are not checked.
func (c *Coordinator) CheckMemberEpoch(groupID, memberID string, epoch int32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[groupID]
	if g == nil || g.consumer == nil || (memberID == "" && epoch < 0) {
		return nil
	}
	m := g.consumer.members[memberID]
	switch {
	case m == nil:
		return fmt.Errorf("%w: %s", ErrUnknownMember, memberID)
	case m.epoch != epoch:
		return fmt.Errorf("%w: member %s is at epoch %d, the request at %d", ErrStaleMemberEpoch, memberID, m.epoch, epoch)
	}
	return nil
}

// subscribedTopicNames is every topic name a member of g subscribes to,
// resolved against the last topic snapshot.
func (cg *consumerGroup) subscribedTopicNames() map[string]bool {
	out := map[string]bool{}
	for _, m := range cg.members {
		for id := range m.subscribed(cg.topics) {
			out[cg.topics.Name(id)] = true
		}
	}
	return out
}

// AssignedTopic is one topic of a described assignment.
type AssignedTopic struct {
	ID         TopicID
	Name       string // "" if the topic is gone
	Partitions []int32
}

// ConsumerMemberDescription is one member in ConsumerGroupDescribe.
type ConsumerMemberDescription struct {
	MemberID, InstanceID, RackID string
	ClientID, ClientHost         string
	MemberEpoch                  int32
	SubscribedTopics             []string
	SubscribedRegex              string
	Assignment, Target           []AssignedTopic
}

// ConsumerGroupDescription is one ConsumerGroupDescribe entry.
type ConsumerGroupDescription struct {
	Group           string
	State           State
	Epoch           int32
	AssignmentEpoch int32
	Assignor        string
	Members         []ConsumerMemberDescription
}

// DescribeConsumerGroup describes a consumer-protocol group;
// ErrGroupNotFound for an unknown or classic group, as Kafka answers.
func (c *Coordinator) DescribeConsumerGroup(id string) (ConsumerGroupDescription, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[id]
	if g == nil || g.consumer == nil {
		return ConsumerGroupDescription{}, fmt.Errorf("%w: %s is not a consumer group", ErrGroupNotFound, id)
	}
	cg := g.consumer
	d := ConsumerGroupDescription{Group: id, State: g.state, Epoch: cg.epoch, AssignmentEpoch: cg.assignmentEpoch, Assignor: cg.assignor}
	if d.Assignor == "" {
		d.Assignor = c.groupAssignorLocked(cg)
	}
	describe := func(a Assignment) []AssignedTopic {
		var out []AssignedTopic
		for _, t := range a.sortedTopics() {
			out = append(out, AssignedTopic{ID: t, Name: cg.topics.Name(t), Partitions: slices.Clone(a[t])})
		}
		return out
	}
	for _, m := range cg.sortedMembers() {
		d.Members = append(d.Members, ConsumerMemberDescription{
			MemberID: m.id, InstanceID: m.instanceID, RackID: m.rackID,
			ClientID: m.clientID, ClientHost: m.clientHost, MemberEpoch: m.epoch,
			SubscribedTopics: slices.Clone(m.topics), SubscribedRegex: m.regex,
			Assignment: describe(m.assigned), Target: describe(m.target),
		})
	}
	return d, nil
}
