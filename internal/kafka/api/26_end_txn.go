package api

// EndTxn, versions 0–5.
//
// The coordinator makes the commit or abort decision durable, writes every
// marker and offset completion, and only then is this answered: the client's
// next AddPartitionsToTxn finds the transaction complete instead of
// CONCURRENT_TRANSACTIONS. A retry of a completed EndTxn with the same
// outcome succeeds, the opposite outcome is INVALID_TXN_STATE, and a retry
// while the markers are still being written is CONCURRENT_TRANSACTIONS.
//
// Version notes:
//   - v0–1: PRODUCER_FENCED is sent as INVALID_PRODUCER_EPOCH (KIP-588,
//     errcodes.go).
//   - v3: flexible.
//   - v5: transaction version 2 (KIP-890 part 2; ApiVersions advertises the
//     transaction.version feature): the transaction ends with an epoch bump,
//     its markers carry the bumped epoch, and ProducerID/ProducerEpoch answer
//     the id and epoch of the client's next transaction (a new producer id
//     when the epoch is exhausted). A retry is recognised by its epoch being
//     one below the current one; any other old epoch is PRODUCER_FENCED, so a
//     late EndTxn cannot end the next transaction (KAFKA-17754). An abort
//     with no transaction open bumps the epoch too. Versions below 5 keep the
//     epoch (transaction version 1) and answer ProducerID/Epoch -1.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(26, 0, 5, handleEndTxn) }

func handleEndTxn(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.EndTxnRequest)
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if env.Txn == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	if !allowedTxnID(env, conn, security.OpWrite, req.TransactionalID) {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil
	}
	fam := coordinatorFamily(req.Version, 2)
	if req.Version >= 5 {
		next, err := env.Txn.EndTxnV2(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit)
		resp.ErrorCode = errorCode(err, fam)
		if err == nil {
			resp.ProducerID, resp.ProducerEpoch = next.ProducerID, next.Epoch
		}
		return resp, nil
	}
	err := env.Txn.EndTxn(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit)
	resp.ErrorCode = errorCode(err, fam)
	return resp, nil
}
