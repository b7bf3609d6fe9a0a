package api

// OffsetDelete, version 0.
//
// Deletes committed offsets of a group (kafka-consumer-groups
// --delete-offsets). A group with members keeps the offsets of topics they
// subscribe to (GROUP_SUBSCRIBED_TO_TOPIC per partition); a live group whose
// protocol type is not "consumer" cannot be inspected and gets
// NON_EMPTY_GROUP. An unknown group gets GROUP_ID_NOT_FOUND; a partition that
// does not exist, UNKNOWN_TOPIC_OR_PARTITION. The answer follows the fsync.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
)

func init() { register(47, 0, 0, handleOffsetDelete) }

func handleOffsetDelete(ctx context.Context, env *Env, _ *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if env.Groups == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	codes := make([][]int16, len(req.Topics))
	var tps []group.TopicPartition
	type pos struct{ t, p int }
	var sent []pos
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
		for j, p := range t.Partitions {
			if env.PartitionExists != nil && !env.PartitionExists(t.Topic, p.Partition) {
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
				continue
			}
			tps = append(tps, group.TopicPartition{Topic: t.Topic, Partition: p.Partition})
			sent = append(sent, pos{i, j})
		}
	}
	errs, err := env.Groups.DeleteOffsets(ctx, req.Group, tps)
	if err != nil {
		resp.ErrorCode = groupCode(err)
		return resp, nil
	}
	for k, at := range sent {
		codes[at.t][at.p] = groupCode(errs[k])
	}
	for i, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = codes[i][j]
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
