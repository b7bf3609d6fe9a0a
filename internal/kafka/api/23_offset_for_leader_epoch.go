package api

// OffsetForLeaderEpoch, versions 2–4.
//
// kgo validates consumer positions with it when it is advertised (KIP-320).
// Every partition has had one leader, this node, at epoch 0 since it was
// created, so:
//   - LeaderEpoch 0 (or any epoch ≤ 0): epoch 0 ends at the log end offset.
//   - A higher epoch was never seen: UNDEFINED (-1/-1), as Kafka answers.
//   - CurrentLeaderEpoch above 0: UNKNOWN_LEADER_EPOCH.
// v3+ carries ReplicaID (-1 for consumers; ignored).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(23, 2, 4, handleOffsetForLeaderEpoch) }

func handleOffsetForLeaderEpoch(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		topicAllowed := allowedCluster(env, conn, security.OpClusterAction) || allowedTopic(env, conn, security.OpDescribe, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			p, err := lookupPartition(env, rt.Topic, rp.Partition)
			switch {
			case !topicAllowed:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case err != nil:
				sp.ErrorCode = errorCode(err, dataAPIs)
			case leaderEpochCode(rp.CurrentLeaderEpoch) != 0:
				sp.ErrorCode = leaderEpochCode(rp.CurrentLeaderEpoch)
			case rp.LeaderEpoch <= p.LeaderEpoch():
				sp.LeaderEpoch, sp.EndOffset = p.LeaderEpoch(), p.EndOffset()
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
