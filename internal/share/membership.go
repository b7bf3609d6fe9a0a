package share

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/statelog"
)

// group is one share group: its members (volatile: they rejoin after a
// restart), its share partitions (durable) and an epoch that moves whenever
// the assignment is recomputed.
type group struct {
	id      string
	epoch   int32
	members map[string]*member
	sps     map[topicPartition]*sharePartition
	// changed is closed (and replaced) when records may have become
	// acquirable: long-polling fetches of the group wait on it.
	changed chan struct{}
	// metadata is the subscribed topics' ids and partition counts when
	// the assignment was last computed; a change recomputes it.
	metadata string
	joins    uint64 // join order of members
}

// member is one share consumer. Its id is chosen by the client.
type member struct {
	id               string
	epoch, prevEpoch int32
	clientID, host   string
	rack             *string
	subscribed       []string
	assignment       map[[16]byte][]int32
	sentEpoch        int32 // the epoch whose assignment it was last sent
	deadline         time.Time
	joinSeq          uint64
}

func newGroup(id string) *group {
	return &group{id: id, members: map[string]*member{}, sps: map[topicPartition]*sharePartition{}, changed: make(chan struct{})}
}

// wakeLocked wakes the group's long-polling fetches.
func (g *group) wakeLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// State is what DescribeGroups and ListGroups say of a share group.
func (g *group) stateLocked() string {
	if len(g.members) == 0 {
		return "Empty"
	}
	return "Stable"
}

// HeartbeatRequest is a ShareGroupHeartbeat.
type HeartbeatRequest struct {
	Group, MemberID string
	MemberEpoch     int32
	RackID          *string
	// Subscribed is nil when unchanged since the last heartbeat.
	Subscribed       []string
	ClientID, Host   string
	SubscribedChange bool
}

// HeartbeatResult is the answer; Assignment is nil when the member's
// assignment has not changed since it was last sent.
type HeartbeatResult struct {
	MemberID    string
	MemberEpoch int32
	Interval    time.Duration
	Assignment  map[[16]byte][]int32
}

// maxMemberIDLength is Kafka's bound on client-chosen member ids (a UUID).
const maxMemberIDLength = 36

// Heartbeat joins (epoch 0), keeps alive (the current or previous epoch) or
// leaves (-1) a share group and returns the member's assignment when it
// changed.
func (c *Coordinator) Heartbeat(req HeartbeatRequest) (HeartbeatResult, error) {
	switch {
	case req.Group == "":
		return HeartbeatResult{}, ErrInvalidGroupID
	case req.MemberID == "" || len(req.MemberID) > maxMemberIDLength:
		return HeartbeatResult{}, fmt.Errorf("%w: member id must be 1 to %d characters", ErrInvalidRequest, maxMemberIDLength)
	case req.MemberEpoch < -1:
		return HeartbeatResult{}, fmt.Errorf("%w: member epoch %d", ErrInvalidRequest, req.MemberEpoch)
	case req.MemberEpoch == 0 && len(req.Subscribed) == 0:
		return HeartbeatResult{}, fmt.Errorf("%w: joining needs subscribed topic names", ErrInvalidRequest)
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return HeartbeatResult{}, ErrClosed
	}
	st := c.settingsLocked(req.Group)
	res := HeartbeatResult{MemberID: req.MemberID, Interval: st.heartbeat}
	g := c.groups[req.Group]
	switch req.MemberEpoch {
	case 0:
		if g == nil {
			g = newGroup(req.Group)
			c.groups[req.Group] = g
			// The group's existence is best effort: its share partitions
			// are written (and waited for) when records are handed out.
			if _, err := c.appendLocked([]statelog.Record{groupRecord(g.id, 0, false)}); err != nil {
				delete(c.groups, req.Group)
				return HeartbeatResult{}, err
			}
			c.logger.Info("share group created", "group", g.id)
		}
		m := g.members[req.MemberID]
		if m == nil {
			if len(g.members) >= int(c.cfg.Broker.Int("group.share.max.size")) {
				return HeartbeatResult{}, ErrGroupMaxSize
			}
			g.joins++
			m = &member{id: req.MemberID, joinSeq: g.joins}
			g.members[m.id] = m
			c.logger.Info("share group member joined", "group", g.id, "member", m.id, "client_id", req.ClientID, "host", req.Host)
		}
		m.clientID, m.host, m.rack = req.ClientID, req.Host, req.RackID
		m.subscribed = slices.Sorted(slices.Values(req.Subscribed))
		m.deadline = now.Add(st.sessionTimeout)
		c.rebalanceLocked(g)
		m.prevEpoch, m.epoch, m.sentEpoch = g.epoch, g.epoch, g.epoch
		c.saveMemberLocked(g, m)
		res.MemberEpoch = m.epoch
		res.Assignment = copyAssignment(m.assignment)
		return res, nil
	case -1:
		if g == nil {
			return HeartbeatResult{}, ErrGroupNotFound
		}
		m := g.members[req.MemberID]
		if m == nil {
			return HeartbeatResult{}, ErrUnknownMember
		}
		c.removeMemberLocked(g, m, true, "left")
		res.MemberEpoch = -1
		return res, nil
	}
	if g == nil {
		return HeartbeatResult{}, ErrGroupNotFound
	}
	m := g.members[req.MemberID]
	if m == nil {
		return HeartbeatResult{}, ErrUnknownMember
	}
	if req.MemberEpoch != m.epoch && req.MemberEpoch != m.prevEpoch {
		return HeartbeatResult{}, fmt.Errorf("%w: epoch %d, member is at %d", ErrFencedMemberEpoch, req.MemberEpoch, m.epoch)
	}
	m.deadline = now.Add(st.sessionTimeout)
	if req.RackID != nil {
		m.rack = req.RackID
	}
	full := req.Subscribed != nil
	if full {
		subs := slices.Sorted(slices.Values(req.Subscribed))
		if !slices.Equal(subs, m.subscribed) {
			m.subscribed = subs
			c.rebalanceLocked(g)
			c.saveMemberLocked(g, m)
		}
	}
	if c.metadataLocked(g) != g.metadata {
		c.rebalanceLocked(g)
	}
	if m.epoch != g.epoch {
		m.prevEpoch, m.epoch = m.epoch, g.epoch
		c.saveMemberLocked(g, m)
	}
	res.MemberEpoch = m.epoch
	if full || m.sentEpoch != m.epoch {
		m.sentEpoch = m.epoch
		res.Assignment = copyAssignment(m.assignment)
	}
	return res, nil
}

func copyAssignment(a map[[16]byte][]int32) map[[16]byte][]int32 {
	out := make(map[[16]byte][]int32, len(a))
	for id, ps := range a {
		out[id] = slices.Clone(ps)
	}
	return out
}

// removeMemberLocked takes a member out of its group and releases what it
// holds (its sessions are closed). graceful: it left by itself, so records
// it still holds were never processed and their delivery is taken back
// (Kafka does the same); a member whose session timed out keeps the
// delivery counted, so a record that kills its consumers still reaches
// the delivery limit.
func (c *Coordinator) removeMemberLocked(g *group, m *member, graceful bool, why string) {
	delete(g.members, m.id)
	c.appendBestEffortLocked(memberRecord(g.id, m, true))
	for _, s := range c.sessions {
		if s.key.group == g.id && s.key.member == m.id {
			c.closeSessionLocked(s, graceful)
		}
	}
	c.rebalanceLocked(g)
	c.logger.Info("share group member removed", "group", g.id, "member", m.id, "reason", why)
}

// expireMembersLocked removes the members whose session timed out.
func (c *Coordinator) expireMembersLocked(g *group, now time.Time) {
	for _, id := range sortedKeys(g.members) {
		if m := g.members[id]; now.After(m.deadline) {
			c.removeMemberLocked(g, m, false, "session timeout")
		}
	}
}

// metadataLocked describes the topics the group's members subscribe to:
// their ids and partition counts.
func (c *Coordinator) metadataLocked(g *group) string {
	topics := map[string]bool{}
	for _, m := range g.members {
		for _, t := range m.subscribed {
			topics[t] = true
		}
	}
	var b strings.Builder
	for _, t := range sortedKeys(topics) {
		if ti, ok := c.cfg.Topics.ByName(t); ok {
			fmt.Fprintf(&b, "%s:%x:%d;", t, ti.ID, ti.Partitions)
		}
	}
	return b.String()
}

// rebalanceLocked recomputes every member's assignment and moves the group
// epoch. The assignor is Kafka's "simple" one in spirit: each topic's
// partitions are spread over the members subscribed to it, round robin in
// join order; when a topic has more members than partitions, members share
// partitions (that is what share groups are for) so that every member gets
// at least one.
func (c *Coordinator) rebalanceLocked(g *group) {
	g.epoch++
	c.appendBestEffortLocked(groupRecord(g.id, g.epoch, false))
	c.assignLocked(g)
}

// saveMemberLocked writes a member's record (best effort: members are
// kept across a restart so that their sessions resume at once, but a lost
// record only makes the member rejoin).
func (c *Coordinator) saveMemberLocked(g *group, m *member) {
	c.appendBestEffortLocked(memberRecord(g.id, m, false))
}

func (c *Coordinator) appendBestEffortLocked(r statelog.Record) {
	if _, err := c.appendLocked([]statelog.Record{r}); err != nil {
		c.logger.Error("share log append failed", "err", err)
	}
}

// assignLocked computes every member's assignment for the group's epoch.
func (c *Coordinator) assignLocked(g *group) {
	g.metadata = c.metadataLocked(g)
	ms := slices.SortedFunc(maps.Values(g.members), func(a, b *member) int { return int(a.joinSeq - b.joinSeq) })
	for _, m := range ms {
		m.assignment = map[[16]byte][]int32{}
	}
	topics := map[string][]*member{}
	for _, m := range ms {
		for _, t := range m.subscribed {
			topics[t] = append(topics[t], m)
		}
	}
	for _, t := range sortedKeys(topics) {
		ti, ok := c.cfg.Topics.ByName(t)
		if !ok || ti.Partitions <= 0 {
			continue
		}
		subs := topics[t]
		n := int(ti.Partitions)
		if len(subs) <= n {
			for p := range n {
				m := subs[p%len(subs)]
				m.assignment[ti.ID] = append(m.assignment[ti.ID], int32(p))
			}
			continue
		}
		for i, m := range subs {
			m.assignment[ti.ID] = append(m.assignment[ti.ID], int32(i%n))
		}
	}
}

// settingsLocked reads a group's effective configs: its own, else the
// broker's.
func (c *Coordinator) settingsLocked(groupID string) settings {
	own := c.configs[resourceKey{ResourceGroup, groupID}]
	get := func(name string) string {
		if v, ok := own[name]; ok {
			return v
		}
		p, _ := config.LookupGroup(name)
		return c.cfg.Broker.GroupDefault(p)
	}
	num := func(name string) int64 {
		n, _ := strconv.ParseInt(get(name), 10, 64)
		return n
	}
	fl := func(name string) float64 {
		f, _ := strconv.ParseFloat(get(name), 64)
		return f
	}
	ms := func(name string) time.Duration { return time.Duration(num(name)) * time.Millisecond }
	return settings{
		lockDuration:    ms("share.record.lock.duration.ms"),
		deliveryLimit:   int16(num("share.delivery.count.limit")),
		maxLocks:        int(num("share.partition.max.record.locks")),
		readCommitted:   get("share.isolation.level") == "read_committed",
		renewEnabled:    get("share.renew.acknowledge.enable") == "true",
		dlqTopic:        get("errors.deadletterqueue.topic.name"),
		dlqCopy:         get("errors.deadletterqueue.copy.record.enable") == "true",
		backoff:         ms("idem.share.release.backoff.ms"),
		backoffMax:      ms("idem.share.release.backoff.max.ms"),
		backoffMultiple: fl("idem.share.release.backoff.multiplier"),
		backoffJitter:   fl("idem.share.release.backoff.jitter"),
		autoReset:       get("share.auto.offset.reset"),
		sessionTimeout:  ms("share.session.timeout.ms"),
		heartbeat:       ms("share.heartbeat.interval.ms"),
	}
}
