package api

// Heartbeat, versions 0–4.
//
// Keeps the member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: InstanceID (static membership); FENCED_INSTANCE_ID.
//   - v4: flexible.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(12, 0, 4, handleHeartbeat) }

func handleHeartbeat(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if env.Groups == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	if !allowedGroup(env, conn, security.OpRead, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	err := env.Groups.Heartbeat(group.HeartbeatRequest{
		Group:      req.Group,
		MemberID:   req.MemberID,
		InstanceID: deref(req.InstanceID),
		Generation: req.Generation,
	})
	resp.ErrorCode = errorCode(err, coordinatorAPIs)
	return resp, nil
}
