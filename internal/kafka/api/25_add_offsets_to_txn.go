package api

// AddOffsetsToTxn, versions 0–3. Adds the consumer group to the transaction
// so that its TxnOffsetCommits are completed with it. Kafka would add the
// group's __consumer_offsets partition; on one node that partition is
// implicit, so success needs no partition check. PRODUCER_FENCED is
// INVALID_PRODUCER_EPOCH below v2 (KIP-588).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(25, 0, 3, handleAddOffsetsToTxn) }

func handleAddOffsetsToTxn(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AddOffsetsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	switch {
	case env.Txn == nil:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
	case req.Group == "":
		resp.ErrorCode = kerr.InvalidGroupID.Code
	case !allowedTxnID(env, conn, security.OpWrite, req.TransactionalID):
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
	case !allowedGroup(env, conn, security.OpRead, req.Group):
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
	default:
		resp.ErrorCode = errorCode(env.Txn.AddOffsets(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group), coordinatorFamily(req.Version, 2))
	}
	return resp, nil
}
