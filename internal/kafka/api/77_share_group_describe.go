package api

// ShareGroupDescribe, version 1.
//
// Each group: state (Empty or Stable; a group id that is not a share group
// gets GROUP_ID_NOT_FOUND), group and assignment epoch, the assignor
// ("simple", what Kafka calls its share assignor) and members with their
// subscriptions and assignments (topic ids and names).
// IncludeAuthorizedOperations is answered with -2^31 (not computed: idem
// has no ACLs yet).

import (
	"context"
	"math"

	"github.com/idem-dev/idem/internal/security"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(77, 1, 1, handleShareGroupDescribe) }

func handleShareGroupDescribe(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ShareGroupDescribeRequest)
	resp := req.ResponseKind().(*kmsg.ShareGroupDescribeResponse)
	for _, id := range req.GroupIDs {
		rg := kmsg.NewShareGroupDescribeResponseGroup()
		rg.GroupID = id
		rg.AuthorizedOperations = math.MinInt32
		if !allowedGroup(env, conn, security.OpDescribe, id) {
			rg.ErrorCode = kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		if env.Share == nil {
			rg.ErrorCode = kerr.CoordinatorNotAvailable.Code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		d, err := env.Share.DescribeGroup(id)
		if err != nil {
			rg.ErrorCode, rg.ErrorMessage = shareCode(err), shareMessage(err)
			rg.GroupState = "Dead"
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		rg.GroupState, rg.GroupEpoch, rg.AssignmentEpoch, rg.Assignor = d.State, d.Epoch, d.Epoch, "simple"
		for _, m := range d.Members {
			rm := kmsg.NewShareGroupDescribeResponseGroupMember()
			rm.MemberID, rm.RackID, rm.MemberEpoch = m.MemberID, m.RackID, m.MemberEpoch
			rm.ClientID, rm.ClientHost, rm.SubscribedTopicNames = m.ClientID, m.Host, m.Subscribed
			for _, tid := range sortedShareTopicIDs(m.Assignment) {
				tp := kmsg.NewShareGroupDescribeResponseGroupMemberAssignmentTopicPartition()
				tp.TopicID, tp.Partitions = tid, m.Assignment[tid]
				if t, ok := env.Share.TopicName(tid); ok {
					tp.Topic = t
				}
				rm.Assignment.TopicPartitions = append(rm.Assignment.TopicPartitions, tp)
			}
			rg.Members = append(rg.Members, rm)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
