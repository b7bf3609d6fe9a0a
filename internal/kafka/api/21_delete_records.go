package api

// DeleteRecords, versions 0–2.
//
// Advances a partition's log start offset (kadm DeleteRecords, rpk, the
// console): records below it are no longer served and whole segments below it
// are removed. Offset -1 means the high watermark. An offset above the high
// watermark gives OFFSET_OUT_OF_RANGE; an unknown partition
// UNKNOWN_TOPIC_OR_PARTITION; a compact-only topic (cleanup.policy=compact)
// POLICY_VIOLATION, as in Kafka: its records go only by compaction. The new
// start offset is durable (it survives a restart and a power loss) before
// the answer.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(21, 0, 2, handleDeleteRecords) }

func handleDeleteRecords(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		topicAllowed := allowedTopic(env, conn, security.OpDelete, rt.Topic)
		t, known := env.Partitions.Topic(rt.Topic)
		compactOnly := known && env.Partitions.CompactOnly(t)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.LowWatermark = rp.Partition, -1
			p, err := lookupPartition(env, rt.Topic, rp.Partition)
			if !topicAllowed {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			} else if err != nil {
				sp.ErrorCode = errorCode(err, dataAPIs)
			} else if compactOnly {
				// As Kafka: records of a compact-only topic go only by
				// compaction.
				sp.ErrorCode = kerr.PolicyViolation.Code
			} else if low, err := p.DeleteRecords(rp.Offset); err != nil {
				sp.ErrorCode = errorCode(err, dataAPIs)
			} else {
				sp.LowWatermark = low
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
