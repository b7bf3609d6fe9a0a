package api

// ShareAcknowledge, versions 1–2 (v2: IsRenewAck, KIP-1222, and
// AcquisitionLockTimeoutMillis in the response).
//
// Behaviour:
//   - It shares ShareFetch's session: epoch 0 is INVALID_SHARE_SESSION_EPOCH
//     (acknowledgements need an open session), N must be the session's
//     epoch and moves it on, -1 applies the acknowledgements and closes the
//     session, releasing what it still holds.
//   - Per partition, all or nothing: every batch must be ascending,
//     non-overlapping, inside the in-flight window, with one type or one
//     per offset (INVALID_REQUEST), and every offset must be held by the
//     member (INVALID_RECORD_STATE). RENEW (4) only with IsRenewAck.
//   - ACCEPT, RELEASE, REJECT and GAP are durable (fsynced, group commit)
//     before the answer; RENEW only moves the lock deadline.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
)

func init() { register(79, 1, 2, handleShareAcknowledge) }

func handleShareAcknowledge(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ShareAcknowledgeRequest)
	resp := req.ResponseKind().(*kmsg.ShareAcknowledgeResponse)
	fail := func(err error) (kmsg.Response, error) {
		resp.ErrorCode, resp.ErrorMessage = shareCode(err), shareMessage(err)
		return resp, nil
	}
	switch {
	case env.Share == nil:
		return fail(share.ErrClosed)
	case req.GroupID == nil || *req.GroupID == "" || req.MemberID == nil || *req.MemberID == "":
		return fail(wrapShare(share.ErrInvalidRequest, "group and member id are required"))
	case req.ShareSessionEpoch == 0:
		return fail(wrapShare(share.ErrInvalidSessionEpoch, "acknowledgements need an open share session (epoch 0 opens one only in ShareFetch)"))
	}
	if !allowedGroup(env, conn, security.OpRead, *req.GroupID) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	renew := req.Version >= 2 && req.IsRenewAck
	ss, err := env.Share.OpenSession(ctx, *req.GroupID, *req.MemberID, conn.ID, req.ShareSessionEpoch)
	if err != nil {
		return fail(err)
	}
	var wait int64
	for _, t := range req.Topics {
		rt := kmsg.NewShareAcknowledgeResponseTopic()
		rt.TopicID = t.TopicID
		name, known := env.Share.TopicName(t.TopicID)
		readable := known && allowedTopic(env, conn, security.OpRead, name)
		for _, p := range t.Partitions {
			rp := kmsg.NewShareAcknowledgeResponseTopicPartition()
			rp.Partition = p.Partition
			rp.CurrentLeader.LeaderID = env.NodeID
			switch {
			case !known:
				rp.ErrorCode = kerr.UnknownTopicID.Code
			case !readable:
				rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			default:
				batches := make([]share.AckBatch, len(p.AcknowledgementBatches))
				for i, b := range p.AcknowledgementBatches {
					batches[i] = share.AckBatch{First: b.FirstOffset, Last: b.LastOffset, Types: b.AcknowledgeTypes}
				}
				pos, err := env.Share.Acknowledge(ss, share.TopicPartition{TopicID: t.TopicID, Partition: p.Partition}, batches, renew)
				rp.ErrorCode, rp.ErrorMessage = shareCode(err), shareMessage(err)
				wait = max(wait, pos)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if req.ShareSessionEpoch == -1 {
		pos, err := env.Share.CloseSession(ss)
		if err != nil {
			return fail(err)
		}
		wait = max(wait, pos)
	}
	group := *req.GroupID
	return &Deferred{Response: resp, Wait: func(ctx context.Context) error {
		resp.AcquisitionLockTimeoutMillis = int32(env.Share.LockTimeout(group).Milliseconds())
		if err := env.Share.WaitDurable(ctx, wait); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			resp.ErrorCode, resp.ErrorMessage = shareCode(err), shareMessage(err)
		}
		ep := kmsg.NewShareAcknowledgeResponseNodeEndpoint()
		ep.NodeID, ep.Host, ep.Port = env.NodeID, env.Host, env.Port
		resp.NodeEndpoints = append(resp.NodeEndpoints, ep)
		return nil
	}}, nil
}
