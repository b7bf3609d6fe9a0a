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
// txnCode is the one map from internal/txn's errors to Kafka codes. KIP-588
// introduced PRODUCER_FENCED; versions that predate it (EndTxn,
// AddPartitionsToTxn and AddOffsetsToTxn below 2, InitProducerId below 4)
// get INVALID_PRODUCER_EPOCH instead, as Kafka sends them.

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/txn"
)

func init() { register(26, 0, 3, handleEndTxn) }

func handleEndTxn(ctx context.Context, env *Env, _ *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.EndTxnRequest)
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if env.Txn == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	err := env.Txn.EndTxn(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit)
	resp.ErrorCode = txnCode(err, req.Version < 2)
	return resp, nil
}

// txnCode maps a transaction coordinator error to its Kafka code.
// fencedAsEpoch is true for request versions older than KIP-588, which know
// INVALID_PRODUCER_EPOCH but not PRODUCER_FENCED.
func txnCode(err error, fencedAsEpoch bool) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, txn.ErrProducerFenced):
		if fencedAsEpoch {
			return kerr.InvalidProducerEpoch.Code
		}
		return kerr.ProducerFenced.Code
	case errors.Is(err, txn.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, txn.ErrConcurrentTransactions):
		return kerr.ConcurrentTransactions.Code
	case errors.Is(err, txn.ErrInvalidTxnState):
		return kerr.InvalidTxnState.Code
	case errors.Is(err, txn.ErrInvalidProducerIDMapping):
		return kerr.InvalidProducerIDMapping.Code
	case errors.Is(err, txn.ErrInvalidTransactionTimeout):
		return kerr.InvalidTransactionTimeout.Code
	case errors.Is(err, txn.ErrTransactionalIDNotFound):
		return kerr.TransactionalIDNotFound.Code
	case errors.Is(err, txn.ErrInvalidRequest):
		return kerr.InvalidRequest.Code
	case errors.Is(err, txn.ErrClosed), errors.Is(err, txn.ErrStorage):
		// Retriable: clients look the coordinator up again.
		return kerr.CoordinatorNotAvailable.Code
	}
	return code(err)
}
