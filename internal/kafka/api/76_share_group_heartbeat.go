package api

// ShareGroupHeartbeat, version 1 (KIP-932; v0 was Kafka 4.0's early access
// and is not served).
//
// Behaviour:
//   - The client chooses its member id (at most 36 characters). Epoch 0
//     joins (SubscribedTopicNames must be non-empty), -1 leaves, any other
//     must be the member's current or previous epoch (FENCED_MEMBER_EPOCH
//     otherwise; UNKNOWN_MEMBER_ID for a member the group does not know,
//     which makes the client rejoin with epoch 0, as it must after a broker
//     restart: members are not persisted).
//   - SubscribedTopicNames null means unchanged; a non-null list is a full
//     request and is answered with the assignment. The assignment is also
//     sent whenever it changed since the member last received it.
//   - Every subscribed topic's partitions are spread over the members
//     subscribed to it; with more members than partitions, members share
//     partitions (share.go's rebalance).
//   - A group id used by a classic consumer group gets GROUP_ID_NOT_FOUND
//     (a group id has one type).
//   - HeartbeatIntervalMillis is share.heartbeat.interval.ms; a member
//     silent for share.session.timeout.ms is removed and its records
//     released.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
)

func init() { register(76, 1, 1, handleShareGroupHeartbeat) }

func handleShareGroupHeartbeat(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ShareGroupHeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
	if env.Share == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	// As Kafka: READ on the group, DESCRIBE on every subscribed topic.
	if !allowedGroup(env, conn, security.OpRead, req.GroupID) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	for _, topic := range req.SubscribedTopicNames {
		if !allowedTopic(env, conn, security.OpDescribe, topic) {
			resp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			return resp, nil
		}
	}
	if req.MemberEpoch == 0 && env.Groups != nil && env.Groups.DescribeGroup(req.GroupID).State != group.Dead {
		err := fmt.Errorf("%w: %q is a classic consumer group", share.ErrGroupNotFound, req.GroupID)
		resp.ErrorCode, resp.ErrorMessage = shareCode(err), shareMessage(err)
		return resp, nil
	}
	res, err := env.Share.Heartbeat(share.HeartbeatRequest{
		Group: req.GroupID, MemberID: req.MemberID, MemberEpoch: req.MemberEpoch, RackID: req.RackID,
		Subscribed: req.SubscribedTopicNames, ClientID: conn.ClientID, Host: clientHost(conn.RemoteAddr),
	})
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = shareCode(err), shareMessage(err)
		resp.MemberEpoch = req.MemberEpoch
		return resp, nil
	}
	resp.MemberID = kmsg.StringPtr(res.MemberID)
	resp.MemberEpoch = res.MemberEpoch
	resp.HeartbeatIntervalMillis = int32(res.Interval.Milliseconds())
	if res.Assignment != nil {
		a := kmsg.NewShareGroupHeartbeatResponseAssignment()
		for _, id := range sortedShareTopicIDs(res.Assignment) {
			tp := kmsg.NewShareGroupHeartbeatResponseAssignmentTopicPartition()
			tp.TopicID, tp.Partitions = id, res.Assignment[id]
			a.TopicPartitions = append(a.TopicPartitions, tp)
		}
		resp.Assignment = &a
	}
	return resp, nil
}
