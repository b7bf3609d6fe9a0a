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
// Transactional ids are not supported yet: such requests get
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a non-retriable error that clients
// surface at once instead of retrying forever (the broker logs why).
// A failure to reserve ids on disk gives COORDINATOR_NOT_AVAILABLE (retriable).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(22, 0, 5, handleInitProducerID) }

func handleInitProducerID(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		env.Logger.Warn("refusing InitProducerId with a transactional id: transactions are not supported yet",
			"transactional_id", *req.TransactionalID, "client_id", conn.ClientID, "remote", conn.RemoteAddr)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
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
