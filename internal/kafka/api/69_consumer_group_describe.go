package api

// ConsumerGroupDescribe, versions 0–1 (KIP-848).
//
// Describes consumer-protocol groups: state (Empty, Assigning, Reconciling,
// Stable), group epoch, assignment epoch, the assignor in use, and every
// member with its epoch, subscription, current assignment and target
// assignment (topic ids and names). An unknown group, or a classic one, is
// GROUP_ID_NOT_FOUND with a message, as Kafka answers (DescribeGroups
// describes classic groups, and shows consumer groups as Dead). AuthorizedOperations is not computed (no
// ACLs): Kafka's "not requested" value, MinInt32, is always sent.
//
// Version notes:
//   - v1: MemberType (1 = consumer) per member.

import (
	"context"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(69, 0, 1, handleConsumerGroupDescribe) }

func handleConsumerGroupDescribe(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ConsumerGroupDescribeRequest)
	resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	for _, id := range req.Groups {
		rg := kmsg.NewConsumerGroupDescribeResponseGroup()
		rg.Group = id
		rg.AuthorizedOperations = math.MinInt32
		switch {
		case env.Groups == nil:
			rg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		case id == "":
			rg.ErrorCode = kerr.InvalidGroupID.Code
		case !allowedGroup(env, conn, security.OpDescribe, id):
			rg.ErrorCode = kerr.GroupAuthorizationFailed.Code
		default:
			d, err := env.Groups.DescribeConsumerGroup(id)
			if err != nil {
				rg.ErrorCode = errorCode(err, coordinatorAPIs)
				rg.ErrorMessage = errMessage(err)
				break
			}
			rg.State = d.State.String()
			rg.Epoch, rg.AssignmentEpoch, rg.AssignorName = d.Epoch, d.AssignmentEpoch, d.Assignor
			for _, m := range d.Members {
				rm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
				rm.MemberID = m.MemberID
				rm.InstanceID = optional(m.InstanceID)
				rm.RackID = optional(m.RackID)
				rm.MemberEpoch = m.MemberEpoch
				rm.ClientID, rm.ClientHost = m.ClientID, m.ClientHost
				rm.SubscribedTopics = m.SubscribedTopics
				if rm.SubscribedTopics == nil {
					rm.SubscribedTopics = []string{}
				}
				rm.SubscribedTopicRegex = optional(m.SubscribedRegex)
				rm.Assignment = describedAssignment(m.Assignment)
				rm.TargetAssignment = describedAssignment(m.Target)
				rm.MemberType = 1 // consumer (v1)
				rg.Members = append(rg.Members, rm)
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}

// optional is a nullable string field: "" is null.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func describedAssignment(ts []group.AssignedTopic) kmsg.Assignment {
	a := kmsg.NewAssignment()
	a.TopicPartitions = []kmsg.AssignmentTopicPartition{}
	for _, t := range ts {
		tp := kmsg.NewAssignmentTopicPartition()
		tp.TopicID, tp.Topic, tp.Partitions = t.ID, t.Name, t.Partitions
		a.TopicPartitions = append(a.TopicPartitions, tp)
	}
	return a
}
