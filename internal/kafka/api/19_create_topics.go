package api

// CreateTopics, versions 0–7.
//
// kafka-go's Conn negotiates among v0–v2, librdkafka uses ≤4, kafkajs ≤3,
// sarama and kgo 7.
//
// Behaviour:
//   - NumPartitions -1 means num.partitions; ReplicationFactor -1 means
//     default.replication.factor. A single node accepts only replication
//     factor 1 (INVALID_REPLICATION_FACTOR otherwise, as Kafka does).
//   - A manual ReplicaAssignment must place every partition on this node
//     alone, partitions numbered 0..n-1 (INVALID_REPLICA_ASSIGNMENT).
//   - Configs are topic-level Kafka names (retention.ms, …) validated by the
//     config registry (INVALID_CONFIG with a message naming the problem).
//   - ValidateOnly (v1+) checks everything and creates nothing.
//   - A name listed twice gets INVALID_REQUEST for each occurrence.
//   - __consumer_offsets and __transaction_state exist already
//     (TOPIC_ALREADY_EXISTS); the other names Kafka reserves get
//     INVALID_REQUEST (internal_topics.go).
//   - v5+ returns the partition count, replication factor and the topic's
//     effective configs; v7 the topic id.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(19, 0, 7, handleCreateTopics) }

func handleCreateTopics(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		fail := func(c int16, format string, args ...any) {
			st.ErrorCode = c
			st.ErrorMessage = errMessage(fmt.Errorf(format, args...))
		}
		n := rt.NumPartitions
		if n == -1 {
			n = int32(env.Config.Int("num.partitions"))
		}
		rf := rt.ReplicationFactor
		configs := map[string]string{}
		for _, c := range rt.Configs {
			if c.Value != nil {
				configs[c.Name] = *c.Value
			}
		}
		switch {
		case seen[rt.Topic] > 1:
			fail(kerr.InvalidRequest.Code, "topic %q is listed more than once", rt.Topic)
		case !allowedCluster(env, conn, security.OpCreate) && !allowedTopic(env, conn, security.OpCreate, rt.Topic):
			fail(kerr.TopicAuthorizationFailed.Code, "the principal may not create topic %q (CREATE on the cluster or the topic)", rt.Topic)
		case len(rt.ReplicaAssignment) > 0 && (rt.NumPartitions != -1 || rt.ReplicationFactor != -1):
			fail(kerr.InvalidRequest.Code, "give either a replica assignment or partitions and replication factor, not both")
		case len(rt.ReplicaAssignment) > 0:
			n = int32(len(rt.ReplicaAssignment))
			for i, a := range rt.ReplicaAssignment {
				if a.Partition != int32(i) || len(a.Replicas) != 1 || a.Replicas[0] != env.NodeID {
					fail(kerr.InvalidReplicaAssignment.Code, "this single node (id %d) must be the only replica of partitions 0..%d", env.NodeID, n-1)
					break
				}
			}
		case rf != -1 && rf != 1:
			fail(kerr.InvalidReplicationFactor.Code, "replication factor %d: a single node supports only 1", rf)
		case n <= 0:
			fail(kerr.InvalidPartitions.Code, "number of partitions must be positive, got %d", n)
		}
		if st.ErrorCode == 0 {
			err := createTopicError(env, rt.Topic)
			switch {
			case err != nil:
			case req.ValidateOnly:
				err = env.Partitions.Catalog().Validate(rt.Topic, n, configs)
			default:
				var tp catalog.Topic
				tp, err = env.Partitions.CreateTopic(rt.Topic, n, configs)
				st.TopicID = tp.ID
			}
			if err != nil {
				st.ErrorCode = errorCode(err, dataAPIs)
				st.ErrorMessage = errMessage(err)
			}
		}
		if st.ErrorCode == 0 {
			st.NumPartitions, st.ReplicationFactor = n, 1
			for _, c := range describeTopicConfigs(env, configs, nil, false, false) {
				rc := kmsg.NewCreateTopicsResponseTopicConfig()
				rc.Name, rc.Value, rc.ReadOnly, rc.Source, rc.IsSensitive = c.Name, c.Value, c.ReadOnly, int8(c.Source), false
				st.Configs = append(st.Configs, rc)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
