package api

// ConsumerGroupHeartbeat, versions 0–1 (KIP-848: the consumer rebalance
// protocol, "group.protocol=consumer").
//
// The coordinator computes assignments (server assignors "uniform", the
// default, and "range", both sticky) and each heartbeat moves the member
// one step towards its target: revocations first, then new partitions once
// their previous owner let go. See internal/group/consumer.go.
//
// Behaviour:
//   - MemberEpoch 0 joins (or rejoins with the same member id: the member
//     keeps its place), -1 leaves, -2 is a static member's temporary leave
//     (it keeps its partitions until its session expires or its instance
//     returns). A join must carry RebalanceTimeoutMillis, a subscription and
//     an empty owned-partitions list (INVALID_REQUEST otherwise).
//   - The answer carries the member epoch, the heartbeat interval
//     (group.consumer.heartbeat.interval.ms) and the assignment (by topic id)
//     when it changed or the request was a full one; it is sent once what
//     changed is durable in the offsets log.
//   - Errors: FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, UNRELEASED_INSTANCE_ID,
//     FENCED_INSTANCE_ID, UNSUPPORTED_ASSIGNOR, INVALID_REGULAR_EXPRESSION,
//     GROUP_MAX_SIZE_REACHED (group.consumer.max.size), GROUP_ID_NOT_FOUND
//     for a classic group that has members (an empty one is converted, its
//     offsets kept, as Kafka does), each with an ErrorMessage.
//   - When group.coordinator.rebalance.protocols does not list "consumer",
//     every heartbeat is UNSUPPORTED_VERSION, which makes clients fall back
//     to the classic protocol (franz-go does).
//   - Topics: the member subscribes to names or to a regular expression (RE2
//     syntax, matched against whole names, internal topics included, as
//     Kafka resolves it); topics created, deleted or given partitions move
//     the group epoch at the next heartbeat.
//
// Version notes:
//   - v0: a first join may leave MemberID empty; the coordinator picks it.
//   - v1: the client picks its member id (KIP-1082); SubscribedTopicRegex.
//     franz-go needs v1 (kgo.ServerSideBalancer()).

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(68, 0, 1, handleConsumerGroupHeartbeat) }

func handleConsumerGroupHeartbeat(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ConsumerGroupHeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	switch {
	case env.Groups == nil:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	case !allowedGroup(env, conn, security.OpRead, req.Group):
		// As Kafka: READ on the group; subscribed topics the principal may
		// not DESCRIBE are refused too.
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	case slices.ContainsFunc(req.SubscribedTopicNames, func(t string) bool { return !allowedTopic(env, conn, security.OpDescribe, t) }):
		resp.ErrorCode = kerr.TopicAuthorizationFailed.Code
		return resp, nil
	case !consumerProtocolEnabled(env):
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		resp.ErrorMessage = kmsg.StringPtr("the consumer rebalance protocol is not enabled (group.coordinator.rebalance.protocols)")
		return resp, nil
	}
	hb := group.ConsumerHeartbeat{
		Group:            req.Group,
		MemberID:         req.MemberID,
		MemberEpoch:      req.MemberEpoch,
		InstanceID:       req.InstanceID,
		RackID:           req.RackID,
		RebalanceTimeout: time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond,
		SubscribedTopics: req.SubscribedTopicNames,
		SubscribedRegex:  req.SubscribedTopicRegex,
		ServerAssignor:   req.ServerAssignor,
		ClientID:         conn.ClientID,
		ClientHost:       clientHost(conn.RemoteAddr),
	}
	if req.RebalanceTimeoutMillis < 0 {
		hb.RebalanceTimeout = -1
	}
	if req.Topics != nil {
		hb.OwnedSent = true
		hb.Owned = group.Assignment{}
		for _, t := range req.Topics {
			ps := slices.Clone(t.Partitions)
			slices.Sort(ps)
			hb.Owned[group.TopicID(t.TopicID)] = slices.Compact(ps)
		}
	}
	if req.Version >= 1 && req.MemberID == "" {
		resp.ErrorCode = kerr.InvalidRequest.Code
		resp.ErrorMessage = kmsg.StringPtr("MemberId can't be empty")
		return resp, nil
	}
	res, err := env.Groups.ConsumerGroupHeartbeat(ctx, hb, groupTopics(env))
	if err != nil {
		resp.ErrorCode = errorCode(err, coordinatorAPIs)
		resp.ErrorMessage = errMessage(err)
		return resp, nil
	}
	resp.MemberID = kmsg.StringPtr(res.MemberID)
	resp.MemberEpoch = res.MemberEpoch
	resp.HeartbeatIntervalMillis = int32(res.HeartbeatInterval / time.Millisecond)
	if res.Assignment != nil {
		a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
		a.Topics = []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{}
		for _, id := range sortedTopicIDs(res.Assignment) {
			t := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
			t.TopicID = id
			t.Partitions = res.Assignment[id]
			a.Topics = append(a.Topics, t)
		}
		resp.Assignment = &a
	}
	return resp, nil
}

// consumerProtocolEnabled reports whether group.coordinator.rebalance.protocols
// lists "consumer".
func consumerProtocolEnabled(env *Env) bool {
	if env.Config == nil {
		return true
	}
	for _, p := range strings.Split(env.Config.String("group.coordinator.rebalance.protocols"), ",") {
		if strings.TrimSpace(p) == "consumer" {
			return true
		}
	}
	return false
}

// groupTopics is the snapshot of topics a KIP-848 heartbeat resolves
// subscriptions against: every topic with its id and partition count, and
// the internal topics (which regular expressions match in Kafka too).
func groupTopics(env *Env) *group.Topics {
	var list []group.TopicInfo
	if env.Partitions != nil {
		for _, t := range env.Partitions.Topics() {
			if isInternalTopic(env, t.Name) {
				continue // shadowed by the internal topic
			}
			list = append(list, group.TopicInfo{Name: t.Name, ID: group.TopicID(t.ID), Partitions: t.Partitions})
		}
	}
	for _, name := range internalTopicNames {
		if isInternalTopic(env, name) {
			list = append(list, group.TopicInfo{Name: name, ID: internalTopicID(env, name), Partitions: 1})
		}
	}
	return group.NewTopics(list)
}

// sortedTopicIDs returns a's topic ids in byte order (stable answers).
func sortedTopicIDs(a group.Assignment) []group.TopicID {
	ids := make([]group.TopicID, 0, len(a))
	for id := range a {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(x, y group.TopicID) int {
		for i := range x {
			if x[i] != y[i] {
				return int(x[i]) - int(y[i])
			}
		}
		return 0
	})
	return ids
}
