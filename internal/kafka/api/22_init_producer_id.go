package api

// InitProducerId, versions 0–5.
//
// v0 must stay in range for librdkafka 2.0.2's IdempotentProducer feature.
//
// Idempotent producers (null transactional id) get a fresh producer id with
// epoch 0 on every call, as Kafka does, even when v3+ requests carry their
// previous id and epoch (KIP-360 recovery): a new id restarts sequences at 0,
// which is always valid. Ids come from a durable block allocator and are
// never reused, across restarts and power loss.
//
// With a transactional id the transaction coordinator decides (fencing the
// previous instance by bumping the epoch, KIP-360 recovery with the v3+
// expected id/epoch); PRODUCER_FENCED is sent as INVALID_PRODUCER_EPOCH below
// v4 (KIP-588). Without a coordinator such requests get
// COORDINATOR_NOT_AVAILABLE. A failure to reserve ids on disk gives
// COORDINATOR_NOT_AVAILABLE (retriable); with a transactional id, a failed
// disk gives NOT_COORDINATOR, as for every coordinator log (errcodes.go).

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/txn"
)

func init() { register(22, 0, 5, handleInitProducerID) }

func handleInitProducerID(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil && !allowedTxnID(env, conn, security.OpWrite, *req.TransactionalID) {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil
	}
	// An idempotent producer needs IDEMPOTENT_WRITE on the cluster or,
	// since KIP-679, WRITE on some topic.
	if req.TransactionalID == nil && !allowedCluster(env, conn, security.OpIdempotentWrite) &&
		env.Authorizer != nil && !env.Authorizer.AllowedOnSome(conn.Principal, conn.Host, security.OpWrite, security.ResourceTopic) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil
	}
	if req.TransactionalID != nil {
		if env.Txn == nil {
			env.Logger.Warn("InitProducerId with a transactional id but no transaction coordinator",
				"transactional_id", *req.TransactionalID, "client_id", conn.ClientID, "remote", conn.RemoteAddr)
			resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
			return resp, nil
		}
		expected := txn.NoProducer
		if req.GetVersion() >= 3 && req.ProducerID >= 0 {
			expected = txn.ProducerIDEpoch{ProducerID: req.ProducerID, Epoch: req.ProducerEpoch}
		}
		timeout := time.Duration(req.TransactionTimeoutMillis) * time.Millisecond
		pe, err := env.Txn.InitProducerID(ctx, *req.TransactionalID, timeout, expected)
		if err != nil {
			resp.ErrorCode = errorCode(err, coordinatorFamily(req.GetVersion(), 4))
			return resp, nil
		}
		resp.ProducerID, resp.ProducerEpoch = pe.ProducerID, pe.Epoch
		return resp, nil
	}
	id, err := env.ProducerIDs.Next()
	if err != nil {
		env.Logger.Error("cannot allocate a producer id", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp, nil
}
