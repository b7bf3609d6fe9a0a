package api

// DescribeGroups, versions 0–5.
//
// An unknown group is described as Dead with no error, as Kafka does before
// v6, and so is a KIP-848 consumer group (KIP-1043: these versions cannot
// say "not a classic group"; ConsumerGroupDescribe describes it). Member
// metadata and assignments are filled only when the group is Stable;
// Protocol likewise.
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: IncludeAuthorizedOperations: the operations the principal may do
//     on the group (READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS,
//     ALTER_CONFIGS); a group it may not DESCRIBE is
//     GROUP_AUTHORIZATION_FAILED.
//   - v4: InstanceID per member.
//   - v5: flexible.
//   - v6 (GROUP_ID_NOT_FOUND for unknown groups, ErrorMessage) is not advertised.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(15, 0, 5, handleDescribeGroups) }

func handleDescribeGroups(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = id
		switch {
		case env.Groups == nil:
			rg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		case id == "":
			rg.ErrorCode = kerr.InvalidGroupID.Code
		case !allowedGroup(env, conn, security.OpDescribe, id):
			rg.ErrorCode = kerr.GroupAuthorizationFailed.Code
		default:
			d := env.Groups.DescribeGroup(id)
			if d.Type == "consumer" {
				// KIP-848 groups are described by ConsumerGroupDescribe.
				// Kafka (KIP-1043) answers the versions before v6 as
				// for a group that does not exist: Dead, no error, so
				// that older tools do not fail.
				rg.State = "Dead"
				break
			}
			rg.State = d.State.String()
			rg.ProtocolType = d.ProtocolType
			rg.Protocol = d.Protocol
			for _, m := range d.Members {
				rm := kmsg.NewDescribeGroupsResponseGroupMember()
				rm.MemberID = m.MemberID
				if m.InstanceID != "" {
					rm.InstanceID = kmsg.StringPtr(m.InstanceID)
				}
				rm.ClientID = m.ClientID
				rm.ClientHost = m.ClientHost
				rm.ProtocolMetadata = m.Metadata
				rm.MemberAssignment = m.Assignment
				rg.Members = append(rg.Members, rm)
			}
			if req.Version >= 3 && req.IncludeAuthorizedOperations {
				rg.AuthorizedOperations = authorizedOps(env, conn, security.ResourceGroup, id, groupOps)
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
