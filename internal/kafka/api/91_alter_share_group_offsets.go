package api

// AlterShareGroupOffsets, version 0.
//
// Sets the start offset of share partitions of a group with no members
// (NON_EMPTY_GROUP otherwise); a group that does not exist is created
// empty, as Kafka does. The partitions' in-flight state is dropped:
// delivery restarts at the new offset. The answer comes once the change is
// durable. Unknown topics or partitions get UNKNOWN_TOPIC_OR_PARTITION; a
// negative offset INVALID_REQUEST.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
)

func init() { register(91, 0, 0, handleAlterShareGroupOffsets) }

func handleAlterShareGroupOffsets(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterShareGroupOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.AlterShareGroupOffsetsResponse)
	if env.Share == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	if !allowedGroup(env, conn, security.OpRead, req.GroupID) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	if env.Groups != nil && env.Groups.DescribeGroup(req.GroupID).State != group.Dead {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		resp.ErrorMessage = kmsg.StringPtr("a classic consumer group, not a share group")
		return resp, nil
	}
	type slot struct{ t, p int }
	var offsets []share.PartitionOffset
	var where []slot
	for i, rt := range req.Topics {
		t := kmsg.NewAlterShareGroupOffsetsResponseTopic()
		t.Topic = rt.Topic
		id, _, ok := env.Share.TopicID(rt.Topic)
		t.TopicID = id
		for j, rp := range rt.Partitions {
			p := kmsg.NewAlterShareGroupOffsetsResponseTopicPartition()
			p.Partition = rp.Partition
			if !ok {
				p.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else if !allowedTopic(env, conn, security.OpRead, rt.Topic) {
				p.ErrorCode = kerr.TopicAuthorizationFailed.Code
			} else {
				offsets = append(offsets, share.PartitionOffset{TopicID: id, Partition: rp.Partition, Offset: rp.StartOffset})
				where = append(where, slot{i, j})
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	errs, err := env.Share.AlterOffsets(ctx, req.GroupID, offsets)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = shareCode(err), shareMessage(err)
		return resp, nil
	}
	for k, err := range errs {
		p := &resp.Topics[where[k].t].Partitions[where[k].p]
		p.ErrorCode, p.ErrorMessage = shareCode(err), shareMessage(err)
		if p.ErrorCode == kerr.UnknownTopicID.Code {
			p.ErrorCode = kerr.UnknownTopicOrPartition.Code
		}
	}
	return resp, nil
}
