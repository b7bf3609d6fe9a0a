package api

// ListOffsets, versions 1–9.
//
// v0 (the old "offsets array" layout) is not served; librdkafka's OffsetTime
// feature needs v1 in range and kafka-go's Conn uses v1. v10 (TimeoutMillis)
// and v11 are not advertised yet.
//
// Timestamps:
//   - -1 latest: the high watermark, or under read_committed (v2+) the last
//     stable offset. Timestamp -1.
//   - -2 earliest, -4 earliest-local (v8+; no tiered storage): log start.
//   - -3 max timestamp (v7+): the batch holding the largest timestamp, with
//     that timestamp; -1/-1 when the partition is empty.
//   - -5 earliest pending upload (v9+): -1, as with tiered storage off.
//   - t ≥ 0: the first record with timestamp ≥ t and its timestamp, or -1/-1
//     when there is none. Only visible (durable) data is considered.
//   - CurrentLeaderEpoch (v4+) above 0 gives UNKNOWN_LEADER_EPOCH.
//   - Internal topics are not served: INVALID_TOPIC_EXCEPTION
//     (internal_topics.go).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(2, 1, 9, handleListOffsets) }

func handleListOffsets(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		topicAllowed := allowedTopic(env, conn, security.OpDescribe, rt.Topic)
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset = -1, -1
			p, err := lookupPartition(env, rt.Topic, rp.Partition)
			switch {
			case !topicAllowed:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case err != nil:
				sp.ErrorCode = errorCode(err, dataAPIs)
			case leaderEpochCode(rp.CurrentLeaderEpoch) != 0:
				sp.ErrorCode = leaderEpochCode(rp.CurrentLeaderEpoch)
			default:
				sp.LeaderEpoch = p.LeaderEpoch()
				switch ts := rp.Timestamp; {
				case ts == -1 && req.IsolationLevel == 1:
					sp.Offset = p.LastStableOffset()
				case ts == -1:
					sp.Offset = p.HighWatermark()
				case ts == -2 || ts == -4:
					sp.Offset = p.StartOffset()
				case ts == -3:
					if t, off, found, err := p.MaxTimestamp(); err != nil {
						sp.ErrorCode = errorCode(err, dataAPIs)
					} else if found {
						sp.Timestamp, sp.Offset = t, off
					}
				case ts == -5:
				case ts < 0:
					sp.ErrorCode = kerr.InvalidRequest.Code
				default:
					off, t, found, err := recordForTime(p, ts)
					if err != nil {
						sp.ErrorCode = errorCode(err, dataAPIs)
					} else if found {
						sp.Timestamp, sp.Offset = t, off
					}
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
