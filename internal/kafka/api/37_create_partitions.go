package api

// CreatePartitions, versions 0–3.
//
// Grows a topic to Count partitions (never shrinks: INVALID_PARTITIONS). A
// manual Assignment must put each new partition on this node alone
// (INVALID_REPLICA_ASSIGNMENT). ValidateOnly checks and changes nothing.
// New partitions are created durably in the catalog before their logs open.
// Internal topics keep their one partition (INVALID_TOPIC_EXCEPTION).

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(37, 0, 3, handleCreatePartitions) }

func handleCreatePartitions(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		fail := func(c int16, format string, args ...any) {
			st.ErrorCode, st.ErrorMessage = c, errMessage(fmt.Errorf(format, args...))
		}
		if seen[rt.Topic] > 1 {
			fail(kerr.InvalidRequest.Code, "topic %q is listed more than once", rt.Topic)
		} else if !allowedTopic(env, conn, security.OpAlter, rt.Topic) {
			fail(kerr.TopicAuthorizationFailed.Code, "the principal may not alter topic %q", rt.Topic)
		}
		for _, a := range rt.Assignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != env.NodeID {
				fail(kerr.InvalidReplicaAssignment.Code, "this single node (id %d) must be the only replica", env.NodeID)
				break
			}
		}
		if st.ErrorCode == 0 && isInternalTopic(env, rt.Topic) {
			err := internalTopicError(rt.Topic)
			st.ErrorCode, st.ErrorMessage = errorCode(err, dataAPIs), errMessage(err)
		}
		if st.ErrorCode == 0 {
			if err := env.Partitions.AddPartitions(rt.Topic, rt.Count, req.ValidateOnly); err != nil {
				st.ErrorCode, st.ErrorMessage = errorCode(err, dataAPIs), errMessage(err)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
