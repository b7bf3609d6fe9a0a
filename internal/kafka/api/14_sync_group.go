package api

// SyncGroup, versions 0–5.
//
// The leader sends every member's assignment; followers that arrive first
// block (their connection only) until the leader's SyncGroup or a rebalance.
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: InstanceID (static membership); FENCED_INSTANCE_ID.
//   - v4: flexible.
//   - v5: ProtocolType and Protocol in request and response; a mismatch with
//     the group's gives INCONSISTENT_GROUP_PROTOCOL.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(14, 0, 5, handleSyncGroup) }

func handleSyncGroup(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SyncGroupRequest)
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	if env.Groups == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	if !allowedGroup(env, conn, security.OpRead, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	sr := group.SyncRequest{
		Group:        req.Group,
		MemberID:     req.MemberID,
		InstanceID:   deref(req.InstanceID),
		Generation:   req.Generation,
		ProtocolType: deref(req.ProtocolType),
		Protocol:     deref(req.Protocol),
	}
	if len(req.GroupAssignment) > 0 {
		sr.Assignments = make(map[string][]byte, len(req.GroupAssignment))
		for _, a := range req.GroupAssignment {
			sr.Assignments[a.MemberID] = a.MemberAssignment
		}
	}
	ctx, cancel := untilClosing(ctx, env.Closing)
	defer cancel()
	res, err := env.Groups.SyncGroup(ctx, sr)
	resp.ErrorCode = errorCode(err, coordinatorAPIs)
	if err != nil {
		return resp, nil
	}
	resp.ProtocolType = kmsg.StringPtr(res.ProtocolType)
	resp.Protocol = kmsg.StringPtr(res.Protocol)
	resp.MemberAssignment = res.Assignment
	return resp, nil
}
