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
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(47, 0, 0, handleOffsetDelete) }

func handleOffsetDelete(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if env.Groups == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	if !allowedGroup(env, conn, security.OpDelete, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	var tps []group.TopicPartition
	answers := newPartitionAnswers(len(req.Topics))
	for i, t := range req.Topics {
		answers.topic(i, len(t.Partitions))
		topicAllowed := allowedTopic(env, conn, security.OpRead, t.Topic)
		for j, p := range t.Partitions {
			if !topicAllowed {
				answers.deny(i, j)
				continue
			}
			if answers.hand(env, i, j, t.Topic, p.Partition) {
				tps = append(tps, group.TopicPartition{Topic: t.Topic, Partition: p.Partition})
			}
		}
	}
	errs, err := env.Groups.DeleteOffsets(ctx, req.Group, tps)
	if err != nil {
		// A group-level error answers the request, not its partitions.
		resp.ErrorCode = errorCode(err, coordinatorAPIs)
		return resp, nil
	}
	answers.settle(errs, nil, coordinatorAPIs)
	for i, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = answers.code(i, j)
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
