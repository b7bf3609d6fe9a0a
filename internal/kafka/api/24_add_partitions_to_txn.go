package api

// AddPartitionsToTxn, versions 0–3 (the client form; v4's broker-to-broker
// batched verification is not needed on one node, where Produce asks the
// coordinator in process).
//
// Every partition must exist and belong to a topic clients may write;
// otherwise the missing ones get UNKNOWN_TOPIC_OR_PARTITION, those of
// internal topics TOPIC_AUTHORIZATION_FAILED, the rest
// OPERATION_NOT_ATTEMPTED, and nothing is added (as Kafka does). Otherwise the coordinator's answer
// applies to every partition. PRODUCER_FENCED is INVALID_PRODUCER_EPOCH below
// v2 (KIP-588).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/txn"
)

func init() { register(24, 0, 3, handleAddPartitionsToTxn) }

func handleAddPartitionsToTxn(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AddPartitionsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	var parts []txn.TopicPartition
	// refused holds the partitions that cannot be added, with their code.
	refused := map[txn.TopicPartition]int16{}
	txnAllowed := allowedTxnID(env, conn, security.OpWrite, req.TransactionalID)
	for _, t := range req.Topics {
		topicAllowed := allowedTopic(env, conn, security.OpWrite, t.Topic)
		for _, p := range t.Partitions {
			tp := txn.TopicPartition{Topic: t.Topic, Partition: p}
			parts = append(parts, tp)
			switch {
			case !txnAllowed:
				refused[tp] = kerr.TransactionalIDAuthorizationFailed.Code
			case !topicAllowed:
				refused[tp] = kerr.TopicAuthorizationFailed.Code
			case isInternalTopic(env, t.Topic):
				refused[tp] = kerr.TopicAuthorizationFailed.Code
			case env.PartitionExists != nil && !env.PartitionExists(t.Topic, p):
				refused[tp] = kerr.UnknownTopicOrPartition.Code
			}
		}
	}
	var all int16
	switch {
	case env.Txn == nil:
		all = kerr.CoordinatorNotAvailable.Code
	case len(refused) > 0:
	default:
		all = errorCode(env.Txn.AddPartitions(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, parts), coordinatorFamily(req.Version, 2))
	}
	for _, t := range req.Topics {
		rt := kmsg.NewAddPartitionsToTxnResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			rp.Partition = p
			rp.ErrorCode = all
			if len(refused) > 0 {
				rp.ErrorCode = kerr.OperationNotAttempted.Code
				if c, ok := refused[txn.TopicPartition{Topic: t.Topic, Partition: p}]; ok {
					rp.ErrorCode = c
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
