package api

// AddPartitionsToTxn, versions 0–5.
//
// v0–3 are the client's form (transaction version 1). v4–5 are the batched
// form Kafka's partition leaders send the coordinator (KIP-890): several
// transactions per request, each either VerifyOnly (report, per partition,
// whether it is in the ongoing transaction, changing nothing) or an add.
// On one node Produce asks the coordinator in process, so no client needs
// them; they are served so that what is advertised is what Kafka 4 serves.
//
// Every partition must exist and belong to a topic clients may write;
// otherwise the missing ones get UNKNOWN_TOPIC_OR_PARTITION, those of
// internal topics TOPIC_AUTHORIZATION_FAILED, the rest
// OPERATION_NOT_ATTEMPTED, and nothing is added (as Kafka does). Otherwise
// the coordinator's answer applies to every partition.
//
// Version notes:
//   - v0–1: PRODUCER_FENCED is sent as INVALID_PRODUCER_EPOCH (KIP-588).
//   - v3: flexible.
//   - v4: batched by transaction, with VerifyOnly; a top-level ErrorCode. An
//     add (not VerifyOnly) is transaction version 2's implicit add: it starts
//     a transaction if none is open. A verified partition not in the
//     transaction is INVALID_TXN_STATE.
//   - v5: the same, with TRANSACTION_ABORTABLE for a verified partition not
//     in the transaction (Kafka's coordinator answer; KIP-890).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/txn"
)

func init() { register(24, 0, 5, handleAddPartitionsToTxn) }

func handleAddPartitionsToTxn(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AddPartitionsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if req.Version >= 4 {
		for _, rt := range req.Transactions {
			resp.Transactions = append(resp.Transactions, addPartitionsBatched(ctx, env, conn, req.Version, rt))
		}
		return resp, nil
	}
	topics := make([]addTopic, 0, len(req.Topics))
	for _, t := range req.Topics {
		topics = append(topics, addTopic{t.Topic, t.Partitions})
	}
	txnAllowed := allowedTxnID(env, conn, security.OpWrite, req.TransactionalID)
	denied := func(topic string) int16 {
		switch {
		case !txnAllowed:
			return kerr.TransactionalIDAuthorizationFailed.Code
		case !allowedTopic(env, conn, security.OpWrite, topic):
			return kerr.TopicAuthorizationFailed.Code
		}
		return 0
	}
	codes := addPartitionCodes(env, topics, denied, func(parts []txn.TopicPartition) ([]int16, int16) {
		err := env.Txn.AddPartitions(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, parts)
		return nil, errorCode(err, coordinatorFamily(req.Version, 2))
	})
	for i, t := range req.Topics {
		rt := kmsg.NewAddPartitionsToTxnResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			rp.Partition = p
			rp.ErrorCode = codes[i][j]
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

// addTopic is one topic of either form of the request.
type addTopic struct {
	topic      string
	partitions []int32
}

// addPartitionCodes answers the partitions of one transaction: refused ones
// are answered here and nothing is asked; otherwise ask gets every
// partition and returns a code per partition, or one code for all.
func addPartitionCodes(env *Env, topics []addTopic, denied func(topic string) int16, ask func([]txn.TopicPartition) ([]int16, int16)) [][]int16 {
	var parts []txn.TopicPartition
	// refused holds the partitions that cannot be added, with their code.
	refused := map[txn.TopicPartition]int16{}
	for _, t := range topics {
		refusal := denied(t.topic)
		for _, p := range t.partitions {
			tp := txn.TopicPartition{Topic: t.topic, Partition: p}
			parts = append(parts, tp)
			switch {
			case refusal != 0:
				refused[tp] = refusal
			case isInternalTopic(env, t.topic):
				refused[tp] = kerr.TopicAuthorizationFailed.Code
			case env.PartitionExists != nil && !env.PartitionExists(t.topic, p):
				refused[tp] = kerr.UnknownTopicOrPartition.Code
			}
		}
	}
	var each []int16
	var all int16
	switch {
	case env.Txn == nil:
		all = kerr.CoordinatorNotAvailable.Code
	case len(refused) > 0:
	default:
		each, all = ask(parts)
	}
	out := make([][]int16, len(topics))
	i := 0
	for ti, t := range topics {
		out[ti] = make([]int16, len(t.partitions))
		for pi, p := range t.partitions {
			switch c, ok := refused[txn.TopicPartition{Topic: t.topic, Partition: p}]; {
			case ok:
				out[ti][pi] = c
			case len(refused) > 0:
				out[ti][pi] = kerr.OperationNotAttempted.Code
			case each != nil:
				out[ti][pi] = each[i]
			default:
				out[ti][pi] = all
			}
			i++
		}
	}
	return out
}

// addPartitionsBatched answers one transaction of a v4+ request.
func addPartitionsBatched(ctx context.Context, env *Env, conn *Conn, version int16, rt kmsg.AddPartitionsToTxnRequestTransaction) kmsg.AddPartitionsToTxnResponseTransaction {
	topics := make([]addTopic, 0, len(rt.Topics))
	for _, t := range rt.Topics {
		topics = append(topics, addTopic{t.Topic, t.Partitions})
	}
	// The batched form (v4+) is the brokers' own, as in Kafka: it needs
	// CLUSTER_ACTION on the cluster.
	clusterAction := allowedCluster(env, conn, security.OpClusterAction)
	denied := func(string) int16 {
		if !clusterAction {
			return kerr.ClusterAuthorizationFailed.Code
		}
		return 0
	}
	codes := addPartitionCodes(env, topics, denied, func(parts []txn.TopicPartition) ([]int16, int16) {
		if !rt.VerifyOnly {
			err := env.Txn.AddPartitionsImplicit(ctx, rt.TransactionalID, rt.ProducerID, rt.ProducerEpoch, parts)
			return nil, errorCode(err, coordinatorAPIs)
		}
		in, err := env.Txn.VerifyPartitions(rt.TransactionalID, rt.ProducerID, rt.ProducerEpoch, parts)
		if err != nil {
			return nil, errorCode(err, coordinatorAPIs)
		}
		notIn := kerr.TransactionAbortable.Code
		if version < 5 {
			notIn = kerr.InvalidTxnState.Code
		}
		each := make([]int16, len(in))
		for i, ok := range in {
			if !ok {
				each[i] = notIn
			}
		}
		return each, 0
	})
	out := kmsg.NewAddPartitionsToTxnResponseTransaction()
	out.TransactionalID = rt.TransactionalID
	for i, t := range rt.Topics {
		ot := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
		ot.Topic = t.Topic
		for j, p := range t.Partitions {
			op := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
			op.Partition = p
			op.ErrorCode = codes[i][j]
			ot.Partitions = append(ot.Partitions, op)
		}
		out.Topics = append(out.Topics, ot)
	}
	return out
}
