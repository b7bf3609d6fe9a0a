package api

// DeleteShareGroupOffsets, version 0.
//
// Drops a share group's state for whole topics; the group must have no
// members (NON_EMPTY_GROUP) and exist (GROUP_ID_NOT_FOUND). Delivery of
// those topics then starts again at share.auto.offset.reset. The answer
// comes once the deletion is durable; an unknown topic gets
// UNKNOWN_TOPIC_OR_PARTITION.

import (
	"context"

	"github.com/idem-dev/idem/internal/security"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(92, 0, 0, handleDeleteShareGroupOffsets) }

func handleDeleteShareGroupOffsets(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteShareGroupOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteShareGroupOffsetsResponse)
	if env.Share == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	if !allowedGroup(env, conn, security.OpDelete, req.GroupID) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	var ids [][16]byte
	var where []int
	for i, rt := range req.Topics {
		t := kmsg.NewDeleteShareGroupOffsetsResponseTopic()
		t.Topic = rt.Topic
		id, _, ok := env.Share.TopicID(rt.Topic)
		t.TopicID = id
		if !ok {
			t.ErrorCode = kerr.UnknownTopicOrPartition.Code
		} else if !allowedTopic(env, conn, security.OpRead, rt.Topic) {
			t.ErrorCode = kerr.TopicAuthorizationFailed.Code
		} else {
			ids = append(ids, id)
			where = append(where, i)
		}
		resp.Topics = append(resp.Topics, t)
	}
	errs, err := env.Share.DeleteOffsets(ctx, req.GroupID, ids)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = shareCode(err), shareMessage(err)
		return resp, nil
	}
	for k, err := range errs {
		t := &resp.Topics[where[k]]
		t.ErrorCode, t.ErrorMessage = shareCode(err), shareMessage(err)
	}
	return resp, nil
}
