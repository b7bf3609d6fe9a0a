package api

// TxnOffsetCommit, versions 0–5.
//
// Commits offsets inside a transaction: they stay pending, invisible to
// OffsetFetch (and UNSTABLE_OFFSET_COMMIT under RequireStable), until the
// transaction coordinator writes the COMMIT or ABORT marker through the group
// coordinator. The answer follows the fsync of the pending offsets.
//
// Behaviour:
//   - The group is created if it does not exist.
//   - Without member information (v0–2, or generation -1 and no member id)
//     the commit is accepted even while the group has members; with it (v3+,
//     KIP-447) member and generation are checked like OffsetCommit's
//     (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID). Unlike
//     OffsetCommit, a commit during CompletingRebalance is accepted.
//   - A partition that does not exist gets UNKNOWN_TOPIC_OR_PARTITION;
//     metadata over offset.metadata.max.bytes, OFFSET_METADATA_TOO_LARGE.
//   - The producer must have added this group to its ongoing transaction
//     (AddOffsetsToTxn) at this epoch; otherwise INVALID_TXN_STATE, and a
//     stale epoch is fenced (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH before
//     v3). Without this check a commit outside a transaction, or one
//     delayed past its EndTxn, would stay pending with no marker ever coming
//     and block RequireStable offset fetches of the group for good.
//
// Version notes:
//   - v2: LeaderEpoch per partition.
//   - v3: flexible; Generation, MemberID and InstanceID (KIP-447).
//   - v4: same as v3 (retriable errors widened, client side).
//   - v3+ for a KIP-848 consumer group: Generation is the member epoch, a
//     wrong one ILLEGAL_GENERATION (these versions predate
//     STALE_MEMBER_EPOCH).
//   - v5: transaction version 2 (KIP-890 part 2): the commit adds its group
//     to the producer's transaction itself (no AddOffsetsToTxn), durably,
//     before the offsets are written; a commit of an earlier transaction,
//     delivered late, is fenced by its epoch instead of joining the current
//     one.

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(28, 0, 5, handleTxnOffsetCommit) }

func handleTxnOffsetCommit(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)

	tr := group.TxnCommitRequest{
		Group:         req.Group,
		ProducerID:    req.ProducerID,
		ProducerEpoch: req.ProducerEpoch,
		Generation:    -1,
	}
	if req.Version >= 3 {
		tr.Generation, tr.MemberID, tr.InstanceID = req.Generation, req.MemberID, deref(req.InstanceID)
	}
	answers := newPartitionAnswers(len(req.Topics))
	switch {
	case !allowedTxnID(env, conn, security.OpWrite, req.TransactionalID):
		answers.denied = kerr.TransactionalIDAuthorizationFailed.Code
	case !allowedGroup(env, conn, security.OpRead, req.Group):
		answers.denied = kerr.GroupAuthorizationFailed.Code
	}
	for i, t := range req.Topics {
		answers.topic(i, len(t.Partitions))
		topicAllowed := allowedTopic(env, conn, security.OpRead, t.Topic)
		for j, p := range t.Partitions {
			if answers.denied != 0 {
				continue
			}
			if !topicAllowed {
				answers.deny(i, j)
				continue
			}
			if !answers.hand(env, i, j, t.Topic, p.Partition) {
				continue
			}
			epoch := p.LeaderEpoch
			if req.Version < 2 {
				epoch = -1
			}
			tr.Offsets = append(tr.Offsets, group.OffsetCommit{
				Topic: t.Topic, Partition: p.Partition, Offset: p.Offset, LeaderEpoch: epoch, Metadata: deref(p.Metadata),
			})
		}
	}
	fam := coordinatorFamily(req.Version, 3)
	if env.Groups == nil || env.Txn == nil {
		answers.fail(kerr.CoordinatorNotAvailable.Code)
	} else if answers.denied != 0 {
		// Refused above; nothing reaches the coordinators.
	} else if err := addGroupImplicitly(ctx, env, req); err != nil {
		answers.fail(errorCode(err, fam))
	} else if err := env.Txn.VerifyGroup(req.ProducerID, req.ProducerEpoch, req.Group); err != nil {
		answers.fail(errorCode(err, fam))
	} else if len(tr.Offsets) > 0 || req.Group == "" {
		errs, err := env.Groups.TxnOffsetCommit(ctx, tr)
		if errors.Is(err, group.ErrStaleMemberEpoch) {
			// A KIP-848 member at another epoch: the versions served
			// predate STALE_MEMBER_EPOCH, Kafka answers ILLEGAL_GENERATION.
			err = fmt.Errorf("%w: %w", group.ErrIllegalGeneration, err)
		}
		answers.settle(errs, err, fam)
	}
	for i, t := range req.Topics {
		rt := kmsg.NewTxnOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = answers.code(i, j)
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

// addGroupImplicitly adds the group to the producer's transaction for v5+
// (transaction version 2); older versions rely on AddOffsetsToTxn.
func addGroupImplicitly(ctx context.Context, env *Env, req *kmsg.TxnOffsetCommitRequest) error {
	if req.Version < 5 {
		return nil
	}
	if req.Group == "" {
		return group.ErrInvalidGroupID
	}
	return env.Txn.AddOffsetsImplicit(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group)
}
