package api

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// SharePartition is a share partition of a group, as the Kafka API
// DescribeShareGroupOffsets gives it.
type SharePartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// StartOffset is the share-partition start offset (SPSO): everything
	// below it is acknowledged or archived.
	StartOffset int64 `json:"start_offset"`
	// Lag is the records from StartOffset not yet acknowledged, -1 when
	// the broker could not compute it.
	Lag   int64  `json:"lag"`
	Error string `json:"error,omitempty"`
}

// ShareGroupDetail is what GET /v1/share-groups/{id} answers: the group
// and its members (ShareGroupDescribe), its partitions' start offsets and
// lag (DescribeShareGroupOffsets). The in-flight window (records acquired,
// available, their delivery counts) is not in any Kafka API: the console
// shows it from the broker's metrics, and /metrics has it
// (idem_share_partition_records, idem_share_partition_in_flight_deliveries).
type ShareGroupDetail struct {
	ShareGroup
	Assignor   string           `json:"assignor"`
	Partitions []SharePartition `json:"partitions"`
	Lag        int64            `json:"lag"`
}

// ShareGroup describes one share group.
func (s *Service) ShareGroup(ctx context.Context, c *Conn, id string) (ShareGroupDetail, error) {
	described, err := c.Admin.DescribeShareGroups(ctx, id)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return ShareGroupDetail{}, err
	}
	d, ok := described[id]
	if !ok || errors.Is(d.Err, kerr.GroupIDNotFound) || d.GroupState == "Dead" {
		return ShareGroupDetail{}, notFound("share group %q does not exist", id)
	}
	if d.Err != nil {
		return ShareGroupDetail{}, d.Err
	}
	g := ShareGroupDetail{ShareGroup: ShareGroup{Group: id, State: d.GroupState, Epoch: d.GroupEpoch, Members: []ShareMember{}},
		Assignor: d.Assignor, Partitions: []SharePartition{}}
	for _, m := range d.Members {
		sm := ShareMember{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost,
			Subscribed: m.SubscribedTopicNames, Assignments: []Assignment{}}
		if sm.Subscribed == nil {
			sm.Subscribed = []string{}
		}
		for _, t := range m.Assignment.Sorted() {
			sm.Assignments = append(sm.Assignments, Assignment{Topic: t.Topic, Partitions: t.Partitions})
		}
		g.Members = append(g.Members, sm)
	}
	offsets, err := c.Admin.DescribeShareGroupOffsets(ctx, id)
	if err != nil {
		return g, err
	}
	o := offsets[id]
	if o.Err != nil {
		return g, o.Err
	}
	for _, so := range o.Offsets.Sorted() {
		p := SharePartition{Topic: so.Topic, Partition: so.Partition, StartOffset: so.StartOffset, Lag: so.Lag}
		if so.Err != nil {
			p.Error = so.Err.Error()
		}
		if p.Lag > 0 {
			g.Lag += p.Lag
		}
		g.Partitions = append(g.Partitions, p)
	}
	return g, nil
}
