package api

// LeaveGroup, versions 0–5.
//
// Removes members and rebalances the rest.
//
// Version notes:
//   - v0–2: one MemberID; its error is the top-level ErrorCode.
//   - v1: ThrottleMillis.
//   - v3: a batch of members, each by member id or by InstanceID (static
//     members); errors per member, top-level only for group-wide failures.
//   - v4: flexible.
//   - v5: a Reason per member (ignored).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(13, 0, 5, handleLeaveGroup) }

func handleLeaveGroup(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if env.Groups == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	if !allowedGroup(env, conn, security.OpRead, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	var leaving []group.LeaveMember
	if req.Version < 3 {
		leaving = []group.LeaveMember{{MemberID: req.MemberID}}
	} else {
		for _, m := range req.Members {
			leaving = append(leaving, group.LeaveMember{MemberID: m.MemberID, InstanceID: deref(m.InstanceID), Reason: deref(m.Reason)})
		}
	}
	errs, err := env.Groups.LeaveGroup(req.Group, leaving)
	if err != nil {
		resp.ErrorCode = errorCode(err, coordinatorAPIs)
		return resp, nil
	}
	if req.Version < 3 {
		resp.ErrorCode = errorCode(errs[0], coordinatorAPIs)
		return resp, nil
	}
	for i, m := range req.Members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID = m.MemberID
		rm.InstanceID = m.InstanceID
		rm.ErrorCode = errorCode(errs[i], coordinatorAPIs)
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}
