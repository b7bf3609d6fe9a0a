package api

import (
	"context"
	"errors"
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// GroupSummary is one row of GET /v1/groups.
type GroupSummary struct {
	Group        string `json:"group"`
	Type         string `json:"type"` // classic or consumer (KIP-848); share groups are under /v1/share-groups
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Members      int    `json:"members"`
	// Lag is the sum of the partitions' lag (-1 when it could not be
	// computed).
	Lag int64 `json:"lag"`
}

// PartitionLag is one partition a group has committed or is assigned.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Committed is the committed offset, -1 when none.
	Committed     int64  `json:"committed"`
	Metadata      string `json:"metadata,omitempty"`
	HighWatermark int64  `json:"high_watermark"`
	// Lag is HighWatermark - Committed, the whole partition when nothing
	// is committed, or -1 when an offset could not be read.
	Lag      int64  `json:"lag"`
	MemberID string `json:"member_id,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Assignment is what a member is assigned of one topic.
type Assignment struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// Member is a group member.
type Member struct {
	MemberID    string       `json:"member_id"`
	InstanceID  string       `json:"instance_id,omitempty"`
	ClientID    string       `json:"client_id"`
	ClientHost  string       `json:"client_host"`
	Assignments []Assignment `json:"assignments"`
}

// GroupDetail is what GET /v1/groups/{id} answers.
type GroupDetail struct {
	Group        string         `json:"group"`
	State        string         `json:"state"`
	ProtocolType string         `json:"protocol_type"`
	Protocol     string         `json:"protocol"`
	Members      []Member       `json:"members"`
	Offsets      []PartitionLag `json:"offsets"`
	Lag          int64          `json:"lag"`
}

// Groups lists the consumer groups (classic and KIP-848) with their lag.
func (s *Service) Groups(ctx context.Context, c *Conn) ([]GroupSummary, error) {
	pg, err := s.GroupsPage(ctx, c, ListOptions{})
	return pg.Items, err
}

// GroupsPage lists one page of the consumer groups; the lag, which costs a
// describe and an offset fetch per group, is computed for the page's
// groups only.
func (s *Service) GroupsPage(ctx context.Context, c *Conn, opts ListOptions) (ListPage[GroupSummary], error) {
	listed, err := c.Admin.ListGroupsByType(ctx, []string{"classic", "consumer"})
	if err != nil {
		return ListPage[GroupSummary]{}, err
	}
	ids, matching := opts.page(listed.Groups())
	out := ListPage[GroupSummary]{Items: []GroupSummary{}, Matching: matching}
	if len(ids) == 0 {
		return out, nil
	}
	lags, err := c.Admin.Lag(ctx, ids...)
	if err != nil {
		return ListPage[GroupSummary]{}, err
	}
	for _, id := range ids {
		lg := listed[id]
		g := GroupSummary{Group: lg.Group, Type: lg.GroupType, State: lg.State, ProtocolType: lg.ProtocolType, Lag: -1}
		if g.Type == "" {
			g.Type = "classic"
		}
		if l, ok := lags[lg.Group]; ok {
			g.State, g.Members = l.State, len(l.Members)
			if l.Error() == nil {
				g.Lag = l.Lag.Total()
			}
		}
		out.Items = append(out.Items, g)
	}
	return out, nil
}

// Group describes a group: members, assignments, offsets and lag.
func (s *Service) Group(ctx context.Context, c *Conn, id string) (GroupDetail, error) {
	lags, err := c.Admin.Lag(ctx, id)
	if err != nil {
		return GroupDetail{}, err
	}
	l, ok := lags[id]
	if !ok {
		return GroupDetail{}, notFound("group %q does not exist", id)
	}
	if err := l.Error(); err != nil {
		if errors.Is(err, kerr.GroupIDNotFound) {
			return GroupDetail{}, notFound("group %q does not exist", id)
		}
		return GroupDetail{}, err
	}
	if l.State == "Dead" && len(l.Lag) == 0 {
		return GroupDetail{}, notFound("group %q does not exist", id)
	}
	g := GroupDetail{Group: id, State: l.State, ProtocolType: l.ProtocolType, Protocol: l.Protocol,
		Members: []Member{}, Offsets: []PartitionLag{}}
	for _, m := range l.Members {
		mm := Member{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost, Assignments: []Assignment{}}
		if m.InstanceID != nil {
			mm.InstanceID = *m.InstanceID
		}
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range ca.Topics {
				ps := slices.Clone(t.Partitions)
				slices.Sort(ps)
				mm.Assignments = append(mm.Assignments, Assignment{Topic: t.Topic, Partitions: ps})
			}
		}
		g.Members = append(g.Members, mm)
	}
	for _, ml := range l.Lag.Sorted() {
		pl := PartitionLag{Topic: ml.Topic, Partition: ml.Partition, Committed: ml.Commit.At, Metadata: ml.Commit.Metadata,
			HighWatermark: ml.End.Offset, Lag: ml.Lag}
		if ml.Member != nil {
			pl.MemberID = ml.Member.MemberID
		}
		if ml.Err != nil {
			pl.Error = ml.Err.Error()
		}
		g.Offsets = append(g.Offsets, pl)
	}
	g.Lag = l.Lag.Total()
	return g, nil
}

// ResetOffsetsRequest is the body of POST /v1/groups/{id}/offsets.
type ResetOffsetsRequest struct {
	// To is earliest, latest, offset or timestamp.
	To        string `json:"to"`
	Offset    *int64 `json:"offset"`    // for to=offset
	Timestamp *int64 `json:"timestamp"` // for to=timestamp, ms since the epoch
	// Topic limits the reset to one topic (all its partitions); without
	// it every partition the group has committed is reset.
	Topic string `json:"topic"`
	// Partitions limits the reset to these partitions of Topic.
	Partitions []int32 `json:"partitions"`
}

// ResetResult is what a reset answers: the offsets now committed.
type ResetResult struct {
	Group   string         `json:"group"`
	Offsets []PartitionLag `json:"offsets"`
}

// ResetOffsets commits new offsets for an empty group. As in Kafka
// (kafka-consumer-groups --reset-offsets), a group with members is refused:
// they would overwrite the reset with their next commit.
func (s *Service) ResetOffsets(ctx context.Context, c *Conn, id string, req ResetOffsetsRequest) (ResetResult, error) {
	switch req.To {
	case "earliest", "latest":
	case "offset":
		if req.Offset == nil || *req.Offset < 0 {
			return ResetResult{}, badRequest("to=offset needs a non-negative offset")
		}
	case "timestamp":
		if req.Timestamp == nil || *req.Timestamp < 0 {
			return ResetResult{}, badRequest("to=timestamp needs a timestamp in ms since the epoch")
		}
	default:
		return ResetResult{}, badRequest("to must be earliest, latest, offset or timestamp, not %q", req.To)
	}
	if len(req.Partitions) > 0 && req.Topic == "" {
		return ResetResult{}, badRequest("partitions need a topic")
	}
	dgs, err := c.Admin.DescribeGroups(ctx, id)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return ResetResult{}, err
	}
	dg := dgs[id]
	if dg.Err != nil && !errors.Is(dg.Err, kerr.GroupIDNotFound) {
		return ResetResult{}, dg.Err
	}
	if len(dg.Members) > 0 || (dg.State != "" && dg.State != "Empty" && dg.State != "Dead") {
		return ResetResult{}, conflict("group %q is %s with %d members: offsets can be reset only while it has none (stop its consumers first)",
			id, dg.State, len(dg.Members))
	}
	committed, err := c.Admin.FetchOffsets(ctx, id)
	if err != nil {
		return ResetResult{}, err
	}
	// The partitions to reset.
	set := kadm.TopicsSet{}
	if req.Topic != "" {
		td, err := topicMetadata(ctx, c, req.Topic)
		if err != nil {
			return ResetResult{}, err
		}
		for _, p := range req.Partitions {
			if _, ok := td.Partitions[p]; !ok {
				return ResetResult{}, badRequest("topic %q has no partition %d", req.Topic, p)
			}
		}
		if len(req.Partitions) > 0 {
			set.Add(req.Topic, req.Partitions...)
		} else {
			set.Add(req.Topic, td.Partitions.Numbers()...)
		}
	} else {
		committed.Each(func(o kadm.OffsetResponse) {
			if o.Err == nil {
				set.Add(o.Topic, o.Partition)
			}
		})
		if len(set) == 0 {
			if dg.State == "Dead" || dg.State == "" {
				return ResetResult{}, notFound("group %q does not exist", id)
			}
			return ResetResult{}, badRequest("group %q has no committed offsets: name a topic", id)
		}
	}
	topics := set.Topics()
	starts, err := c.Admin.ListStartOffsets(ctx, topics...)
	if err != nil {
		return ResetResult{}, err
	}
	ends, err := c.Admin.ListEndOffsets(ctx, topics...)
	if err != nil {
		return ResetResult{}, err
	}
	var byTime kadm.ListedOffsets
	if req.To == "timestamp" {
		if byTime, err = c.Admin.ListOffsetsAfterMilli(ctx, *req.Timestamp, topics...); err != nil {
			return ResetResult{}, err
		}
	}
	offsets := kadm.Offsets{}
	for _, t := range set.Sorted() {
		for _, p := range t.Partitions {
			start, okS := starts.Lookup(t.Topic, p)
			end, okE := ends.Lookup(t.Topic, p)
			if !okS || !okE || start.Err != nil || end.Err != nil {
				return ResetResult{}, errors.Join(kerr.UnknownTopicOrPartition, start.Err, end.Err)
			}
			var at int64
			switch req.To {
			case "earliest":
				at = start.Offset
			case "latest":
				at = end.Offset
			case "offset":
				at = min(max(*req.Offset, start.Offset), end.Offset)
			case "timestamp":
				o, _ := byTime.Lookup(t.Topic, p)
				at = o.Offset
				if o.Err != nil || at < 0 {
					at = end.Offset
				}
			}
			offsets.Add(kadm.Offset{Topic: t.Topic, Partition: p, At: at, LeaderEpoch: -1})
		}
	}
	resps, err := c.Admin.CommitOffsets(ctx, id, offsets)
	if err != nil {
		return ResetResult{}, err
	}
	if err := resps.Error(); err != nil {
		if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress) {
			return ResetResult{}, conflict("group %q gained members during the reset: %v", id, err)
		}
		return ResetResult{}, err
	}
	out := ResetResult{Group: id, Offsets: []PartitionLag{}}
	resps.Each(func(o kadm.OffsetResponse) {
		end, _ := ends.Lookup(o.Topic, o.Partition)
		out.Offsets = append(out.Offsets, PartitionLag{Topic: o.Topic, Partition: o.Partition, Committed: o.At,
			HighWatermark: end.Offset, Lag: end.Offset - o.At})
	})
	sort.Slice(out.Offsets, func(i, j int) bool {
		a, b := out.Offsets[i], out.Offsets[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return out, nil
}

// DeleteGroup deletes an empty group and its committed offsets.
func (s *Service) DeleteGroup(ctx context.Context, c *Conn, id string) error {
	resp, err := c.Admin.DeleteGroup(ctx, id)
	if err == nil {
		err = resp.Err
	}
	switch {
	case errors.Is(err, kerr.GroupIDNotFound):
		return notFound("group %q does not exist", id)
	case errors.Is(err, kerr.NonEmptyGroup):
		return conflict("group %q has members: it can be deleted only when empty", id)
	}
	return err
}
