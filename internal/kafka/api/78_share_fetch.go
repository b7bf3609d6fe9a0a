package api

// ShareFetch, versions 1–2 (KIP-932; v2 adds ShareAcquireMode, KIP-1206, and
// IsRenewAck, KIP-1222). kgo enables its share tests only with v2;
// librdkafka 2.15 pins v1.
//
// Behaviour:
//   - A share session belongs to (group, member, connection).
//     ShareSessionEpoch 0 opens it (the member must be in the group, else
//     UNKNOWN_MEMBER_ID or GROUP_ID_NOT_FOUND; a request that opens a
//     session and carries acknowledgements is INVALID_REQUEST); N > 0 must
//     be the session's epoch (INVALID_SHARE_SESSION_EPOCH; no session:
//     SHARE_SESSION_NOT_FOUND) and moves it on; -1 applies the
//     acknowledgements, releases what the session still holds and closes it.
//     Too many sessions: SHARE_SESSION_LIMIT_REACHED. When the connection
//     closes, its sessions close and their records are released.
//   - The request's partitions join the session, ForgottenTopicsData leave
//     it; records are then acquired from every partition of the session,
//     starting at a rotating partition, up to MaxRecords (ShareAcquireMode 1:
//     exactly; 0: whole batches) and MaxBytes (capped by fetch.max.bytes).
//   - Piggy-backed acknowledgements are applied first, per partition and
//     all or nothing (AcknowledgeErrorCode: INVALID_REQUEST for a malformed
//     batch, INVALID_RECORD_STATE for a record the member does not hold);
//     the answer waits until they are durable.
//   - Records holds whole batches from the one with the first acquired
//     record to the one with the last; AcquiredRecords says which offsets
//     the member holds and their delivery count. Markers and aborted
//     records (share.isolation.level=read_committed) are never acquired.
//     AcquisitionLockTimeoutMillis is the group's share.record.lock.duration.ms.
//   - Long-poll: with nothing to acquire the answer waits up to
//     MaxWaitMillis (at most 5 minutes) for new records or released ones.
//   - IsRenewAck (v2): MaxBytes, MinBytes, MaxRecords and MaxWaitMillis must
//     be 0 and every partition must carry acknowledgements (RENEW, type 4,
//     is allowed only then); nothing is fetched.
//   - An unknown topic id gets UNKNOWN_TOPIC_ID on its partition.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
)

func init() { register(78, 1, 2, handleShareFetch) }

// defaultShareMaxRecords is what KIP-1206 and kgo use when a request names
// no limit.
const defaultShareMaxRecords = 500

func handleShareFetch(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ShareFetchRequest)
	resp := req.ResponseKind().(*kmsg.ShareFetchResponse)
	fail := func(err error) (kmsg.Response, error) {
		resp.ErrorCode, resp.ErrorMessage = shareCode(err), shareMessage(err)
		return resp, nil
	}
	if env.Share == nil {
		return fail(share.ErrClosed)
	}
	if req.GroupID == nil || *req.GroupID == "" || req.MemberID == nil || *req.MemberID == "" {
		return fail(wrapShare(share.ErrInvalidRequest, "group and member id are required"))
	}
	if !allowedGroup(env, conn, security.OpRead, *req.GroupID) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	hasAcks := false
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			hasAcks = hasAcks || len(p.AcknowledgementBatches) > 0
		}
	}
	if req.ShareSessionEpoch == 0 && hasAcks {
		return fail(wrapShare(share.ErrInvalidRequest, "a request that opens a share session cannot carry acknowledgements"))
	}
	renew := req.Version >= 2 && req.IsRenewAck
	if renew {
		if req.MaxBytes != 0 || req.MinBytes != 0 || req.MaxRecords != 0 || req.MaxWaitMillis != 0 {
			return fail(wrapShare(share.ErrInvalidRequest, "a renew request must have MaxBytes, MinBytes, MaxRecords and MaxWaitMillis 0"))
		}
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				if len(p.AcknowledgementBatches) == 0 {
					return fail(wrapShare(share.ErrInvalidRequest, "every partition of a renew request must carry acknowledgements"))
				}
			}
		}
	}
	ss, err := env.Share.OpenSession(ctx, *req.GroupID, *req.MemberID, conn.ID, req.ShareSessionEpoch)
	if err != nil {
		return fail(err)
	}
	out := newSharePartitions(env)
	var add, forget []share.TopicPartition
	var wait int64
	for _, t := range req.Topics {
		name, known := env.Share.TopicName(t.TopicID)
		var partitions int32
		if known {
			_, partitions, _ = env.Share.TopicID(name)
		}
		for _, p := range t.Partitions {
			tp := share.TopicPartition{TopicID: t.TopicID, Partition: p.Partition}
			if known && !allowedTopic(env, conn, security.OpRead, name) {
				// Never added to the session, like an unknown topic.
				rp := out.get(tp)
				rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				if len(p.AcknowledgementBatches) > 0 {
					rp.AcknowledgeErrorCode = rp.ErrorCode
				}
				continue
			}
			if !known || p.Partition < 0 || p.Partition >= partitions {
				// Never added to the session: a client cannot make every
				// later fetch walk partitions that do not exist.
				code := kerr.UnknownTopicID.Code
				if known {
					code = kerr.UnknownTopicOrPartition.Code
				}
				rp := out.get(tp)
				rp.ErrorCode = code
				if len(p.AcknowledgementBatches) > 0 {
					rp.AcknowledgeErrorCode = code
				}
				continue
			}
			add = append(add, tp)
			if len(p.AcknowledgementBatches) == 0 {
				continue
			}
			batches := make([]share.AckBatch, len(p.AcknowledgementBatches))
			for i, b := range p.AcknowledgementBatches {
				batches[i] = share.AckBatch{First: b.FirstOffset, Last: b.LastOffset, Types: b.AcknowledgeTypes}
			}
			pos, err := env.Share.Acknowledge(ss, tp, batches, renew)
			rp := out.get(tp)
			rp.AcknowledgeErrorCode, rp.AcknowledgeErrorMessage = shareCode(err), shareMessage(err)
			wait = max(wait, pos)
		}
	}
	for _, ft := range req.ForgottenTopicsData {
		for _, p := range ft.Partitions {
			forget = append(forget, share.TopicPartition{TopicID: ft.TopicID, Partition: p})
		}
	}
	group := *req.GroupID
	if req.ShareSessionEpoch == -1 {
		pos, err := env.Share.CloseSession(ss)
		if err != nil {
			return fail(err)
		}
		wait = max(wait, pos)
	} else if !renew {
		env.Share.UpdateSession(ss, add, forget)
	}
	return &Deferred{Response: resp, Wait: func(ctx context.Context) error {
		resp.AcquisitionLockTimeoutMillis = int32(env.Share.LockTimeout(group).Milliseconds())
		if err := env.Share.WaitDurable(ctx, wait); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			resp.ErrorCode, resp.ErrorMessage = shareCode(err), shareMessage(err)
			return nil
		}
		if req.ShareSessionEpoch != -1 && !renew {
			opts := share.FetchOptions{
				MaxRecords: int(req.MaxRecords), Strict: req.Version >= 2 && req.ShareAcquireMode == 1,
				MaxBytes: int(req.MaxBytes), MaxWait: min(time.Duration(req.MaxWaitMillis)*time.Millisecond, maxFetchWait),
				Closing: env.Closing,
			}
			if opts.MaxRecords <= 0 {
				opts.MaxRecords = defaultShareMaxRecords
			}
			limit := int(env.Config.Int("fetch.max.bytes"))
			if opts.MaxBytes <= 0 || opts.MaxBytes > limit {
				opts.MaxBytes = limit
			}
			res, err := env.Share.Fetch(ctx, ss, opts)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				resp.ErrorCode, resp.ErrorMessage = shareCode(err), shareMessage(err)
				return nil
			}
			for _, pr := range res.Partitions {
				rp := out.get(share.TopicPartition{TopicID: pr.TopicID, Partition: pr.Partition})
				if pr.Err != nil {
					rp.ErrorCode, rp.ErrorMessage = shareCode(pr.Err), shareMessage(pr.Err)
					continue
				}
				rp.Records = pr.Records
				for _, a := range pr.Acquired {
					ar := kmsg.NewShareFetchResponseTopicPartitionAcquiredRecord()
					ar.FirstOffset, ar.LastOffset, ar.DeliveryCount = a.First, a.Last, a.DeliveryCount
					rp.AcquiredRecords = append(rp.AcquiredRecords, ar)
				}
			}
		}
		resp.Topics = out.topics()
		ep := kmsg.NewShareFetchResponseNodeEndpoint()
		ep.NodeID, ep.Host, ep.Port = env.NodeID, env.Host, env.Port
		resp.NodeEndpoints = append(resp.NodeEndpoints, ep)
		return nil
	}}, nil
}

func wrapShare(sentinel error, msg string) error {
	return &shareError{sentinel, msg}
}

type shareError struct {
	sentinel error
	msg      string
}

func (e *shareError) Error() string { return e.msg }
func (e *shareError) Unwrap() error { return e.sentinel }

// sharePartitions collects a ShareFetch response's partitions in the order
// they are first named.
type sharePartitions struct {
	env   *Env
	order []share.TopicPartition
	parts map[share.TopicPartition]*kmsg.ShareFetchResponseTopicPartition
}

func newSharePartitions(env *Env) *sharePartitions {
	return &sharePartitions{env: env, parts: map[share.TopicPartition]*kmsg.ShareFetchResponseTopicPartition{}}
}

func (s *sharePartitions) get(tp share.TopicPartition) *kmsg.ShareFetchResponseTopicPartition {
	if p := s.parts[tp]; p != nil {
		return p
	}
	p := kmsg.NewShareFetchResponseTopicPartition()
	p.Partition = tp.Partition
	p.CurrentLeader.LeaderID, p.CurrentLeader.LeaderEpoch = s.env.NodeID, 0
	s.parts[tp] = &p
	s.order = append(s.order, tp)
	return &p
}

func (s *sharePartitions) topics() []kmsg.ShareFetchResponseTopic {
	var out []kmsg.ShareFetchResponseTopic
	idx := map[[16]byte]int{}
	for _, tp := range s.order {
		i, ok := idx[tp.TopicID]
		if !ok {
			i = len(out)
			idx[tp.TopicID] = i
			t := kmsg.NewShareFetchResponseTopic()
			t.TopicID = tp.TopicID
			out = append(out, t)
		}
		out[i].Partitions = append(out[i].Partitions, *s.parts[tp])
	}
	return out
}
