package api

// EndTxn, versions 0–3 (transaction.version 1: no epoch bump per
// transaction, so v5's ProducerID/ProducerEpoch are not served).
//
// The coordinator makes the commit or abort decision durable, writes every
// marker and offset completion, and only then is this answered: the client's
// next AddPartitionsToTxn finds the transaction complete instead of
// CONCURRENT_TRANSACTIONS. A retry of a completed EndTxn with the same
// outcome succeeds, the opposite outcome is INVALID_TXN_STATE, and a retry
// while the markers are still being written is CONCURRENT_TRANSACTIONS.
//
// KIP-588 introduced PRODUCER_FENCED; EndTxn below v2 gets
// INVALID_PRODUCER_EPOCH instead, as Kafka sends it (errcodes.go).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(26, 0, 3, handleEndTxn) }

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
	err := env.Txn.EndTxn(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit)
	resp.ErrorCode = errorCode(err, coordinatorFamily(req.Version, 2))
	return resp, nil
}
