package api

// DescribeTransactions, version 0 (KIP-664): the coordinator's view of each
// transactional id — state, producer id and epoch, timeout, start time and
// partitions — so operators can find what holds a partition's last stable
// offset back.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(65, 0, 0, handleDescribeTransactions) }

func handleDescribeTransactions(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		st.ProducerID, st.ProducerEpoch, st.StartTimestamp = -1, -1, -1
		if !allowedTxnID(env, conn, security.OpDescribe, id) {
			st.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		if env.Txn == nil {
			st.ErrorCode = kerr.CoordinatorNotAvailable.Code
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		info, err := env.Txn.Describe(id)
		if err != nil {
			st.ErrorCode = errorCode(err, coordinatorAPIs)
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		st.State = info.State.String()
		st.TimeoutMillis = int32(info.Timeout.Milliseconds())
		if !info.StartTime.IsZero() {
			st.StartTimestamp = info.StartTime.UnixMilli()
		}
		st.ProducerID, st.ProducerEpoch = info.ProducerID, info.ProducerEpoch
		for _, tp := range info.Partitions {
			if n := len(st.Topics); n > 0 && st.Topics[n-1].Topic == tp.Topic {
				st.Topics[n-1].Partitions = append(st.Topics[n-1].Partitions, tp.Partition)
				continue
			}
			t := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
			t.Topic = tp.Topic
			t.Partitions = []int32{tp.Partition}
			st.Topics = append(st.Topics, t)
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp, nil
}
