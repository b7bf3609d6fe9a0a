package api

// JoinGroup, versions 0–9.
//
// JoinGroup v0 must stay advertised: librdkafka < 2.11 enables its balanced
// consumer only when JoinGroup [0,0] overlaps our range (KAFKA-19444). The handler blocks its connection until the join phase
// of the rebalance completes (Kafka also serves one request per connection at
// a time), at most the rebalance timeout.
//
// Version notes:
//   - v0: no RebalanceTimeoutMillis; the session timeout is used for both.
//   - v1: RebalanceTimeoutMillis.
//   - v2: ThrottleMillis in the response.
//   - v4: a first join (empty member id) of a dynamic member gets
//     MEMBER_ID_REQUIRED with a member id to rejoin with (KIP-394); v0–3
//     clients (kafka-go, old librdkafka paths) are added directly.
//   - v5: InstanceID (static membership, KIP-345) and FENCED_INSTANCE_ID.
//   - v6: flexible.
//   - v7: ProtocolType in the response; Protocol nullable.
//   - v8: Reason (logged only).
//   - v9: SkipAssignment for a static leader rejoining a Stable group (KIP-814).

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(11, 0, 9, handleJoinGroup) }

func handleJoinGroup(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.JoinGroupRequest)
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	resp.MemberID = req.MemberID
	if env.Groups == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	if !allowedGroup(env, conn, security.OpRead, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	jr := group.JoinRequest{
		Group:                  req.Group,
		MemberID:               req.MemberID,
		InstanceID:             deref(req.InstanceID),
		ClientID:               conn.ClientID,
		ClientHost:             clientHost(conn.RemoteAddr),
		ProtocolType:           req.ProtocolType,
		SessionTimeout:         time.Duration(req.SessionTimeoutMillis) * time.Millisecond,
		RebalanceTimeout:       time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond,
		RequireKnownMemberID:   req.Version >= 4,
		SupportsSkipAssignment: req.Version >= 9,
		Reason:                 deref(req.Reason),
	}
	if req.Version == 0 {
		jr.RebalanceTimeout = jr.SessionTimeout
	}
	for _, p := range req.Protocols {
		jr.Protocols = append(jr.Protocols, group.Protocol{Name: p.Name, Metadata: p.Metadata})
	}
	ctx, cancel := untilClosing(ctx, env.Closing)
	defer cancel()
	res, err := env.Groups.JoinGroup(ctx, jr)
	resp.ErrorCode = errorCode(err, coordinatorAPIs)
	resp.MemberID = res.MemberID
	if err != nil {
		return resp, nil
	}
	resp.Generation = res.Generation
	resp.ProtocolType = kmsg.StringPtr(res.ProtocolType)
	resp.Protocol = kmsg.StringPtr(res.Protocol)
	resp.LeaderID = res.LeaderID
	resp.SkipAssignment = res.SkipAssignment
	for _, m := range res.Members {
		rm := kmsg.NewJoinGroupResponseMember()
		rm.MemberID = m.MemberID
		if m.InstanceID != "" {
			rm.InstanceID = kmsg.StringPtr(m.InstanceID)
		}
		rm.ProtocolMetadata = m.Metadata
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}
