package group

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/idem-dev/idem/internal/statelog"
)

// State is a group's state, named as Kafka names it in DescribeGroups,
// ListGroups and ConsumerGroupDescribe. Classic groups use Empty,
// PreparingRebalance, CompletingRebalance, Stable and Dead; consumer
// (KIP-848) groups Empty, Assigning, Reconciling, Stable and Dead
// (consumer.go).
type State int8

const (
	// Empty: no members. Offsets may exist; their retention clock runs.
	Empty State = iota
	// PreparingRebalance: waiting for every member to (re)join.
	PreparingRebalance
	// CompletingRebalance: joins answered, waiting for the leader's SyncGroup.
	CompletingRebalance
	// Stable: assignments handed out; members heartbeat.
	Stable
	// Dead: deleted; a group is Dead only in the instant it leaves the map.
	Dead
)

var stateNames = [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Assigning", "Reconciling"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "Unknown"
}

// ParseState parses a Kafka state name (case-insensitive), for ListGroups filters.
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if equalFold(n, name) {
			return State(i), true
		}
	}
	return 0, false
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// Protocol is one assignment protocol a member supports, with its metadata
// (for "consumer" groups, the serialized subscription).
type Protocol struct {
	Name     string
	Metadata []byte
}

// JoinRequest is a JoinGroup. Durations come from the request's milliseconds.
type JoinRequest struct {
	Group            string
	MemberID         string // "" on a first join
	InstanceID       string // group.instance.id; "" = dynamic member
	ClientID         string
	ClientHost       string
	ProtocolType     string
	Protocols        []Protocol // in preference order
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration // v0: pass SessionTimeout
	// RequireKnownMemberID is set for JoinGroup v4+: a first join of a
	// dynamic member gets ErrMemberIDRequired with an id to rejoin with.
	RequireKnownMemberID bool
	// SupportsSkipAssignment is set for JoinGroup v9+ (KIP-814).
	SupportsSkipAssignment bool
	Reason                 string
}

// JoinResult answers a JoinGroup. With an error, MemberID is the id to rejoin
// with (ErrMemberIDRequired) or the request's, and Generation is -1.
type JoinResult struct {
	Generation     int32
	ProtocolType   string
	Protocol       string
	LeaderID       string
	MemberID       string
	SkipAssignment bool
	Members        []MemberMetadata // the leader's only
}

// MemberMetadata is one member as the leader sees it: its metadata for the
// chosen protocol.
type MemberMetadata struct {
	MemberID   string
	InstanceID string
	Metadata   []byte
}

// SyncRequest is a SyncGroup. ProtocolType and Protocol ("" = not sent, v<5)
// must match the group's when set.
type SyncRequest struct {
	Group        string
	MemberID     string
	InstanceID   string
	Generation   int32
	ProtocolType string
	Protocol     string
	Assignments  map[string][]byte // the leader's, by member id
}

// SyncResult answers a SyncGroup.
type SyncResult struct {
	ProtocolType string
	Protocol     string
	Assignment   []byte
}

// HeartbeatRequest is a Heartbeat.
type HeartbeatRequest struct {
	Group      string
	MemberID   string
	InstanceID string
	Generation int32
}

// LeaveMember is one member leaving (LeaveGroup v3+ batches them; v0–2 name
// one member id). An InstanceID removes the static member that holds it.
type LeaveMember struct {
	MemberID   string
	InstanceID string
	Reason     string
}

type joinReply struct {
	res JoinResult
	err error
}

type syncReply struct {
	res SyncResult
	err error
}

// member is one group member. Guarded by Coordinator.mu.
type member struct {
	id, instanceID       string
	clientID, clientHost string
	sessionTimeout       time.Duration
	rebalanceTimeout     time.Duration
	protocols            []Protocol
	assignment           []byte
	seq                  uint64 // join order

	// joinWait is non-nil while the member waits in JoinGroup for the join
	// phase to complete; syncWait while it waits in SyncGroup for the
	// leader's assignment. Both are buffered (1) so a reply never blocks,
	// even when the caller gave up.
	joinWait chan joinReply
	syncWait chan syncReply
	// synced: the member sent SyncGroup in this generation. Members that do
	// not by the group's syncDeadline are removed (the leader never synced,
	// or a follower vanished between join and sync).
	synced bool
	// deadline is the session expiry, moved by heartbeats. It does not apply
	// while the member waits in JoinGroup or SyncGroup (the rebalance and sync
	// deadlines cover those).
	deadline time.Time
}

func (m *member) replyJoin(res JoinResult, err error) {
	if m.joinWait != nil {
		m.joinWait <- joinReply{res, err}
		m.joinWait = nil
	}
}

func (m *member) replySync(res SyncResult, err error) {
	if m.syncWait != nil {
		m.syncWait <- syncReply{res, err}
		m.syncWait = nil
	}
}

func (m *member) metadataFor(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

func sameProtocols(a, b []Protocol) bool {
	return slices.EqualFunc(a, b, func(x, y Protocol) bool {
		return x.Name == y.Name && bytes.Equal(x.Metadata, y.Metadata)
	})
}

// group is one consumer group. Guarded by Coordinator.mu.
type group struct {
	id           string
	state        State
	stateTime    time.Time // when state last changed
	generation   int32
	protocolType string // "" until a member joins: a standalone (simple) group
	protocol     string // chosen in the last completed join
	leader       string
	members      map[string]*member
	static       map[string]string    // group.instance.id → member id
	pending      map[string]time.Time // KIP-394 ids handed out, not yet joined → expiry

	delayUntil   time.Time // end of the initial rebalance delay; zero when none
	delayStart   time.Time
	joinDeadline time.Time // rebalance timeout of the current PreparingRebalance
	syncDeadline time.Time // members must SyncGroup by then; zero when all did

	offsets map[TopicPartition]Offset
	// pendingTxn holds transactional offsets by producer id until the
	// transaction's marker commits or aborts them.
	pendingTxn map[int64]*pendingTxn
	// emptySince starts the retention clock of a group that has had members
	// (KIP-211); standalone groups expire offsets by commit time.
	emptySince time.Time
	// consumer is set when the group uses the consumer rebalance protocol
	// (KIP-848, consumer.go); the classic fields above are then empty.
	consumer *consumerGroup
	// rebalances counts completed joins (classic) and group epoch bumps
	// (consumer protocol) since the group was loaded or created, for
	// /metrics; it is not persisted.
	rebalances int64
}

// Type is the group's type as ListGroups v5 and DescribeGroups name it.
func (g *group) typeName() string {
	if g.consumer != nil {
		return "consumer"
	}
	return "classic"
}

func (g *group) setState(s State, now time.Time) {
	g.state = s
	g.stateTime = now
}

func (g *group) sortedMembersLocked() []*member {
	ms := make([]*member, 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *member) int { return cmp.Compare(a.seq, b.seq) })
	return ms
}

// supportsLocked reports whether a member with this protocol type and these
// protocols may join: the type must match and at least one protocol must be
// supported by every member.
func (g *group) supportsLocked(protocolType string, protocols []Protocol) bool {
	if protocolType == "" || len(protocols) == 0 {
		return false
	}
	if len(g.members) == 0 {
		return true
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		if g.allSupportLocked(p.Name) {
			return true
		}
	}
	return false
}

func (g *group) allSupportLocked(name string) bool {
	for _, m := range g.members {
		if !hasProtocol(m.protocols, name) {
			return false
		}
	}
	return true
}

func hasProtocol(ps []Protocol, name string) bool {
	return slices.ContainsFunc(ps, func(p Protocol) bool { return p.Name == name })
}

// selectProtocolLocked picks the protocol as Kafka does: among protocols every
// member supports, each member votes for the first of its own list; most
// votes wins. Ties go to the leader's (else the first member's) preference.
func (g *group) selectProtocolLocked(order []*member) string {
	votes := map[string]int{}
	for _, m := range order {
		for _, p := range m.protocols {
			if g.allSupportLocked(p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	pref := order[0]
	if l := g.members[g.leader]; l != nil {
		pref = l
	}
	best, bestVotes := "", -1
	for _, p := range pref.protocols {
		if v, ok := votes[p.Name]; ok && v > bestVotes {
			best, bestVotes = p.Name, v
		}
	}
	return best
}

func (g *group) maxRebalanceTimeoutLocked() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

func (g *group) allJoinedLocked() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.members {
		if m.joinWait == nil {
			return false
		}
	}
	return true
}

// validateMemberLocked finds the member a request names, fencing an old
// member id of a static instance that has been replaced (KIP-345).
func (g *group) validateMemberLocked(memberID, instanceID string) (*member, error) {
	if instanceID != "" {
		cur, ok := g.static[instanceID]
		if !ok {
			return nil, ErrUnknownMember
		}
		if cur != memberID {
			return nil, ErrFencedInstanceID
		}
	}
	m := g.members[memberID]
	if m == nil {
		return nil, ErrUnknownMember
	}
	return m, nil
}

// JoinGroup adds or updates a member and blocks until the join phase of the
// rebalance completes, ctx ends, or the coordinator closes.
func (c *Coordinator) JoinGroup(ctx context.Context, req JoinRequest) (JoinResult, error) {
	ch, res, err := c.joinStart(req)
	if ch == nil {
		return res, err
	}
	r, ok := waitCtx(ctx, ch)
	if !ok {
		return JoinResult{MemberID: req.MemberID, Generation: -1}, ctx.Err()
	}
	return r.res, r.err
}

// joinStart validates and applies a JoinGroup; it returns a channel to wait
// on, or the answer when there is nothing to wait for.
func (c *Coordinator) joinStart(req JoinRequest) (chan joinReply, JoinResult, error) {
	fail := JoinResult{MemberID: req.MemberID, Generation: -1}
	if req.Group == "" {
		return nil, fail, ErrInvalidGroupID
	}
	if req.SessionTimeout < c.cfg.MinSessionTimeout || req.SessionTimeout > c.cfg.MaxSessionTimeout {
		return nil, fail, ErrInvalidSessionTimeout
	}
	if req.RebalanceTimeout <= 0 {
		req.RebalanceTimeout = req.SessionTimeout
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 {
		return nil, fail, ErrInconsistentProtocol // before a group is created for it
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fail, ErrClosed
	}
	g := c.groups[req.Group]
	if g != nil && g.consumer != nil {
		// A consumer-protocol group: an empty one becomes classic again
		// (offsets kept), as Kafka converts it; one with members is not
		// a classic group.
		if len(g.consumer.members) > 0 {
			return nil, fail, fmt.Errorf("%w: %s is a consumer group with members", ErrInconsistentProtocol, req.Group)
		}
		g.consumer = nil
		g.protocolType = ""
		g.setState(Empty, now)
		c.appendBestEffortLocked([]statelog.Record{consumerGroupTombstone(g.id), groupRecordLocked(g)})
	}
	if g == nil {
		if req.MemberID != "" {
			return nil, fail, ErrUnknownMember
		}
		g = c.newGroupLocked(req.Group, now)
	}
	return c.joinLocked(g, req, now)
}

// joinLocked returns either a channel to wait on or an immediate answer.
func (c *Coordinator) joinLocked(g *group, req JoinRequest, now time.Time) (chan joinReply, JoinResult, error) {
	fail := JoinResult{MemberID: req.MemberID, Generation: -1}
	if !g.supportsLocked(req.ProtocolType, req.Protocols) {
		return nil, fail, ErrInconsistentProtocol
	}
	if req.MemberID == "" {
		id := c.cfg.memberID(req.ClientID)
		if req.InstanceID != "" {
			if old, ok := g.static[req.InstanceID]; ok {
				return c.replaceStaticLocked(g, g.members[old], id, req, now)
			}
		} else if req.RequireKnownMemberID {
			g.pending[id] = now.Add(req.SessionTimeout)
			c.kick()
			return nil, JoinResult{MemberID: id, Generation: -1}, ErrMemberIDRequired
		}
		return c.addMemberLocked(g, id, req, now), JoinResult{}, nil
	}
	if _, ok := g.pending[req.MemberID]; ok {
		delete(g.pending, req.MemberID)
		if req.InstanceID != "" {
			if _, taken := g.static[req.InstanceID]; taken {
				return nil, fail, ErrFencedInstanceID
			}
		}
		return c.addMemberLocked(g, req.MemberID, req, now), JoinResult{}, nil
	}
	m, err := g.validateMemberLocked(req.MemberID, req.InstanceID)
	if err != nil {
		return nil, fail, err
	}
	switch g.state {
	case PreparingRebalance:
		return c.updateMemberLocked(g, m, req, now), JoinResult{}, nil
	case CompletingRebalance:
		if sameProtocols(m.protocols, req.Protocols) {
			// A retried join: answer with the current generation again.
			return nil, g.joinResultLocked(m, false), nil
		}
		return c.updateMemberLocked(g, m, req, now), JoinResult{}, nil
	case Stable:
		if m.id == g.leader || !sameProtocols(m.protocols, req.Protocols) {
			return c.updateMemberLocked(g, m, req, now), JoinResult{}, nil
		}
		m.deadline = now.Add(m.sessionTimeout)
		return nil, g.joinResultLocked(m, false), nil
	}
	return nil, fail, ErrUnknownMember
}

// joinResultLocked is the JoinGroup answer for m in the current generation;
// the leader gets every member's metadata.
func (g *group) joinResultLocked(m *member, skip bool) JoinResult {
	res := JoinResult{
		Generation:     g.generation,
		ProtocolType:   g.protocolType,
		Protocol:       g.protocol,
		LeaderID:       g.leader,
		MemberID:       m.id,
		SkipAssignment: skip,
	}
	if m.id == g.leader {
		for _, o := range g.sortedMembersLocked() {
			res.Members = append(res.Members, MemberMetadata{MemberID: o.id, InstanceID: o.instanceID, Metadata: o.metadataFor(g.protocol)})
		}
	}
	return res
}

func (c *Coordinator) addMemberLocked(g *group, id string, req JoinRequest, now time.Time) chan joinReply {
	c.seq++
	m := &member{
		id:               id,
		instanceID:       req.InstanceID,
		clientID:         req.ClientID,
		clientHost:       req.ClientHost,
		sessionTimeout:   req.SessionTimeout,
		rebalanceTimeout: req.RebalanceTimeout,
		protocols:        req.Protocols,
		seq:              c.seq,
		joinWait:         make(chan joinReply, 1),
		deadline:         now.Add(req.SessionTimeout),
	}
	if len(g.members) == 0 {
		g.protocolType = req.ProtocolType
	}
	g.members[id] = m
	if m.instanceID != "" {
		g.static[m.instanceID] = id
	}
	if g.state == PreparingRebalance && !g.delayUntil.IsZero() {
		// Another member during the initial delay: wait a little longer
		// for more, but no longer than the rebalance timeout in all.
		limit := g.delayStart.Add(max(g.maxRebalanceTimeoutLocked(), c.cfg.InitialRebalanceDelay))
		g.delayUntil = minTime(now.Add(c.cfg.InitialRebalanceDelay), limit)
		g.joinDeadline = maxTime(g.joinDeadline, g.delayStart.Add(g.maxRebalanceTimeoutLocked()))
	} else if g.state != PreparingRebalance {
		c.prepareRebalanceLocked(g, now)
	} else {
		g.joinDeadline = maxTime(g.joinDeadline, now.Add(m.rebalanceTimeout))
	}
	ch := m.joinWait
	c.maybeCompleteJoinLocked(g, now)
	return ch
}

func (c *Coordinator) updateMemberLocked(g *group, m *member, req JoinRequest, now time.Time) chan joinReply {
	// A second join from the same member (a retry on a new connection)
	// replaces the first; the first is told to rejoin.
	m.replyJoin(JoinResult{MemberID: m.id, Generation: -1}, ErrRebalanceInProgress)
	m.protocols = req.Protocols
	m.sessionTimeout = req.SessionTimeout
	m.rebalanceTimeout = req.RebalanceTimeout
	m.clientID, m.clientHost = req.ClientID, req.ClientHost
	m.joinWait = make(chan joinReply, 1)
	ch := m.joinWait
	if g.state != PreparingRebalance {
		c.prepareRebalanceLocked(g, now)
	}
	c.maybeCompleteJoinLocked(g, now)
	return ch
}

// replaceStaticLocked gives a known group.instance.id a new member id (the
// instance restarted). In a Stable group whose chosen protocol would not
// change there is no rebalance: the member gets the current generation back
// and its old assignment from SyncGroup (KIP-345).
func (c *Coordinator) replaceStaticLocked(g *group, old *member, id string, req JoinRequest, now time.Time) (chan joinReply, JoinResult, error) {
	old.replyJoin(JoinResult{MemberID: old.id, Generation: -1}, ErrFencedInstanceID)
	old.replySync(SyncResult{}, ErrFencedInstanceID)
	oldID := old.id
	delete(g.members, oldID)
	m := old
	m.id = id
	m.clientID, m.clientHost = req.ClientID, req.ClientHost
	m.sessionTimeout, m.rebalanceTimeout = req.SessionTimeout, req.RebalanceTimeout
	m.deadline = now.Add(req.SessionTimeout)
	g.members[id] = m
	g.static[req.InstanceID] = id
	if g.leader == oldID {
		g.leader = id
	}
	m.protocols = req.Protocols
	// Like Kafka, compare the protocol the group would choose, not the
	// metadata bytes: a restarted client's subscription metadata differs in
	// details (owned partitions, generation) that do not call for a rebalance.
	if g.state == Stable && g.selectProtocolLocked(g.sortedMembersLocked()) == g.protocol {
		skip := id == g.leader && req.SupportsSkipAssignment
		res := g.joinResultLocked(m, skip)
		if id == g.leader && !skip {
			// An old leader must not reassign: it would do so without
			// the others rejoining. Kafka sends it no members.
			res.Members = nil
		}
		// Persist the new member id so that the old one stays fenced
		// after a restart.
		c.appendBestEffortLocked([]statelog.Record{groupRecordLocked(g)})
		return nil, res, nil
	}
	m.joinWait = make(chan joinReply, 1)
	ch := m.joinWait
	if g.state != PreparingRebalance {
		c.prepareRebalanceLocked(g, now)
	}
	c.maybeCompleteJoinLocked(g, now)
	return ch, JoinResult{}, nil
}

// prepareRebalanceLocked moves the group to PreparingRebalance. A group that
// was Empty waits the initial rebalance delay first so that members starting
// together end up in one generation instead of several.
func (c *Coordinator) prepareRebalanceLocked(g *group, now time.Time) {
	if g.state == CompletingRebalance {
		for _, m := range g.members {
			m.assignment = nil
			m.replySync(SyncResult{}, ErrRebalanceInProgress)
		}
	}
	wasEmpty := g.state == Empty
	g.setState(PreparingRebalance, now)
	g.syncDeadline = time.Time{}
	g.joinDeadline = now.Add(g.maxRebalanceTimeoutLocked())
	g.delayUntil = time.Time{}
	if wasEmpty && c.cfg.InitialRebalanceDelay > 0 {
		g.delayStart = now
		g.delayUntil = now.Add(c.cfg.InitialRebalanceDelay)
		g.joinDeadline = maxTime(g.joinDeadline, g.delayUntil)
	}
	c.kick()
}

func (c *Coordinator) maybeCompleteJoinLocked(g *group, now time.Time) {
	if g.state != PreparingRebalance {
		return
	}
	if !g.delayUntil.IsZero() {
		if now.Before(g.delayUntil) {
			return
		}
		g.delayUntil = time.Time{}
	}
	if g.allJoinedLocked() || !now.Before(g.joinDeadline) {
		c.completeJoinLocked(g, now)
	}
}

// completeJoinLocked ends the join phase: members that did not rejoin are
// removed (static members stay until their session expires, as in Kafka),
// the generation advances, and every waiting join is answered.
func (c *Coordinator) completeJoinLocked(g *group, now time.Time) {
	for _, m := range g.sortedMembersLocked() {
		if m.joinWait == nil && m.instanceID == "" {
			c.removeMemberLocked(g, m, ErrUnknownMember)
		}
	}
	g.pending = make(map[string]time.Time)
	g.generation++
	g.rebalances++
	if len(g.members) == 0 {
		g.protocol, g.leader = "", ""
		g.setState(Empty, now)
		g.emptySince = now
		c.appendBestEffortLocked([]statelog.Record{groupRecordLocked(g)})
		return
	}
	order := g.sortedMembersLocked()
	if l := g.members[g.leader]; l == nil || l.joinWait == nil {
		g.leader = ""
		for _, m := range order {
			if m.joinWait != nil {
				g.leader = m.id
				break
			}
		}
		if g.leader == "" {
			g.leader = order[0].id
		}
	}
	g.protocol = g.selectProtocolLocked(order)
	g.setState(CompletingRebalance, now)
	g.syncDeadline = now.Add(g.maxRebalanceTimeoutLocked())
	for _, m := range order {
		m.synced = false
		m.assignment = nil
		m.deadline = now.Add(m.sessionTimeout)
		m.replyJoin(g.joinResultLocked(m, false), nil)
	}
	c.appendBestEffortLocked([]statelog.Record{groupRecordLocked(g)})
	c.kick()
}

// removeMemberLocked drops a member and answers its waiting calls with err.
// The caller decides whether the group must rebalance.
func (c *Coordinator) removeMemberLocked(g *group, m *member, err error) {
	m.replyJoin(JoinResult{MemberID: m.id, Generation: -1}, err)
	m.replySync(SyncResult{}, err)
	delete(g.members, m.id)
	if m.instanceID != "" && g.static[m.instanceID] == m.id {
		delete(g.static, m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
	}
}

// membersGoneLocked rebalances after members left or expired.
func (c *Coordinator) membersGoneLocked(g *group, now time.Time) {
	switch g.state {
	case Stable, CompletingRebalance:
		c.prepareRebalanceLocked(g, now)
	}
	c.maybeCompleteJoinLocked(g, now)
}

// SyncGroup hands the leader's assignments out; it blocks a follower that
// arrives first until the leader's SyncGroup (or a rebalance) answers it.
func (c *Coordinator) SyncGroup(ctx context.Context, req SyncRequest) (SyncResult, error) {
	ch, res, err := c.syncStart(req)
	if ch == nil {
		return res, err
	}
	r, ok := waitCtx(ctx, ch)
	if !ok {
		return SyncResult{}, ctx.Err()
	}
	return r.res, r.err
}

func (c *Coordinator) syncStart(req SyncRequest) (chan syncReply, SyncResult, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, SyncResult{}, ErrClosed
	}
	return c.syncLocked(req, now)
}

func (c *Coordinator) syncLocked(req SyncRequest, now time.Time) (chan syncReply, SyncResult, error) {
	g := c.groups[req.Group]
	if g == nil {
		return nil, SyncResult{}, ErrUnknownMember
	}
	m, err := g.validateMemberLocked(req.MemberID, req.InstanceID)
	if err != nil {
		return nil, SyncResult{}, err
	}
	if req.Generation != g.generation {
		return nil, SyncResult{}, ErrIllegalGeneration
	}
	if (req.ProtocolType != "" && req.ProtocolType != g.protocolType) || (req.Protocol != "" && req.Protocol != g.protocol) {
		return nil, SyncResult{}, ErrInconsistentProtocol
	}
	switch g.state {
	case PreparingRebalance:
		return nil, SyncResult{}, ErrRebalanceInProgress
	case CompletingRebalance:
		m.replySync(SyncResult{}, ErrRebalanceInProgress) // a retried sync replaces the first
		m.syncWait = make(chan syncReply, 1)
		ch := m.syncWait
		c.markSyncedLocked(g, m, now)
		if m.id == g.leader {
			for _, o := range g.members {
				o.assignment = req.Assignments[o.id]
			}
			g.setState(Stable, now)
			for _, o := range g.members {
				o.replySync(SyncResult{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: o.assignment}, nil)
			}
			c.appendBestEffortLocked([]statelog.Record{groupRecordLocked(g)})
		}
		return ch, SyncResult{}, nil
	case Stable:
		c.markSyncedLocked(g, m, now)
		return nil, SyncResult{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.assignment}, nil
	}
	return nil, SyncResult{}, ErrUnknownMember
}

func (c *Coordinator) markSyncedLocked(g *group, m *member, now time.Time) {
	m.synced = true
	m.deadline = now.Add(m.sessionTimeout)
	for _, o := range g.members {
		if !o.synced {
			return
		}
	}
	g.syncDeadline = time.Time{}
}

// Heartbeat keeps a member's session alive and tells it whether to rejoin
// (ErrRebalanceInProgress).
func (c *Coordinator) Heartbeat(req HeartbeatRequest) error {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	g := c.groups[req.Group]
	if g == nil {
		return ErrUnknownMember
	}
	m, err := g.validateMemberLocked(req.MemberID, req.InstanceID)
	if err != nil {
		return err
	}
	if req.Generation != g.generation {
		return ErrIllegalGeneration
	}
	m.deadline = now.Add(m.sessionTimeout)
	if g.state == PreparingRebalance {
		return ErrRebalanceInProgress
	}
	return nil
}

// LeaveGroup removes members; the result has one error (or nil) per member.
func (c *Coordinator) LeaveGroup(groupID string, leaving []LeaveMember) ([]error, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	errs := make([]error, len(leaving))
	g := c.groups[groupID]
	if g == nil {
		for i := range errs {
			errs[i] = ErrUnknownMember
		}
		return errs, nil
	}
	gone := false
	for i, l := range leaving {
		id := l.MemberID
		if l.InstanceID != "" {
			cur, ok := g.static[l.InstanceID]
			if !ok {
				errs[i] = ErrUnknownMember
				continue
			}
			if id != "" && id != cur {
				errs[i] = ErrFencedInstanceID
				continue
			}
			id = cur
		}
		if _, ok := g.pending[id]; ok {
			delete(g.pending, id)
			gone = true
			continue
		}
		m := g.members[id]
		if m == nil {
			errs[i] = ErrUnknownMember
			continue
		}
		c.removeMemberLocked(g, m, ErrUnknownMember)
		gone = true
	}
	if gone {
		c.membersGoneLocked(g, now)
	}
	return errs, nil
}

// expireGroupLocked does the timed work of one group: pending member ids
// and sessions that expired, the end of the initial delay or the rebalance
// timeout, and members that never sent SyncGroup.
func (c *Coordinator) expireGroupLocked(g *group, now time.Time) {
	if g.consumer != nil {
		var recs []statelog.Record
		c.expireConsumerMembersLocked(g, now, &recs)
		c.appendBestEffortLocked(recs)
		return
	}
	gone := false
	for id, dl := range g.pending {
		if !now.Before(dl) {
			delete(g.pending, id)
			gone = true
		}
	}
	for _, m := range g.sortedMembersLocked() {
		if m.joinWait == nil && m.syncWait == nil && !now.Before(m.deadline) {
			c.logger.Info("group member session expired", "group", g.id, "member", m.id)
			c.removeMemberLocked(g, m, ErrUnknownMember)
			gone = true
		}
	}
	if (g.state == CompletingRebalance || g.state == Stable) && !g.syncDeadline.IsZero() && !now.Before(g.syncDeadline) {
		for _, m := range g.sortedMembersLocked() {
			if !m.synced {
				c.logger.Info("group member did not sync in time", "group", g.id, "member", m.id)
				c.removeMemberLocked(g, m, ErrUnknownMember)
				gone = true
			}
		}
		g.syncDeadline = time.Time{}
	}
	if gone {
		c.membersGoneLocked(g, now)
	} else {
		c.maybeCompleteJoinLocked(g, now)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
