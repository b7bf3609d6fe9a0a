package api

// OffsetCommit, versions 2–9.
//
// The response is sent only after the commit is fsynced: acknowledged offsets
// survive kill -9 and power loss (the consumer side of at-least-once).
// librdkafka 2.0.2 needs [1,2] to overlap (§2.2) and kafka-go's Conn uses v2,
// so the minimum is 2; v0–1 (ZooKeeper-era, per-partition timestamps) are not
// served. v10 (topic ids, Kafka 4.2) is not advertised.
//
// Behaviour:
//   - Generation -1 with no member id is a "simple" commit (librdkafka
//     assign(), kcat, admin tools): accepted while the group has no members,
//     and it creates the group.
//   - Otherwise member and generation must match (UNKNOWN_MEMBER_ID,
//     ILLEGAL_GENERATION, FENCED_INSTANCE_ID); during CompletingRebalance the
//     answer is REBALANCE_IN_PROGRESS. A group-level error is set on every
//     partition.
//   - A partition that does not exist gets UNKNOWN_TOPIC_OR_PARTITION and is
//     not stored; metadata over offset.metadata.max.bytes gets
//     OFFSET_METADATA_TOO_LARGE.
//
// Version notes:
//   - v2–4: RetentionTimeMillis, ignored (offsets.retention.minutes rules, as
//     in Kafka since 2.1).
//   - v3: ThrottleMillis.
//   - v6: LeaderEpoch per partition (stored and returned by OffsetFetch v5+).
//   - v7: InstanceID (static membership).
//   - v8: flexible.
//   - v9: same wire format; Generation is the member epoch of KIP-848
//     consumer groups. Members of such a group must commit with v9+
//     (UNSUPPORTED_VERSION below), at their member epoch or, for partitions
//     they have held since then, an older one (KIP-1251); anything else is
//     STALE_MEMBER_EPOCH (UNKNOWN_MEMBER_ID for a member that is gone). A
//     commit without a member needs the group to be empty, as for classic
//     groups.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(8, 2, 9, handleOffsetCommit) }

func handleOffsetCommit(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)

	cr := group.CommitRequest{
		Group:      req.Group,
		MemberID:   req.MemberID,
		InstanceID: deref(req.InstanceID),
		Generation: req.Generation,
		// v9 carries KIP-848 member epochs in Generation.
		KnowsMemberEpochs: req.Version >= 9,
	}
	answers := newPartitionAnswers(len(req.Topics))
	if !allowedGroup(env, conn, security.OpRead, req.Group) {
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
			if req.Version < 6 {
				epoch = -1
			}
			cr.Offsets = append(cr.Offsets, group.OffsetCommit{
				Topic: t.Topic, Partition: p.Partition, Offset: p.Offset, LeaderEpoch: epoch, Metadata: deref(p.Metadata),
			})
		}
	}
	if env.Groups == nil {
		answers.fail(kerr.CoordinatorNotAvailable.Code)
	} else if answers.denied == 0 && (len(cr.Offsets) > 0 || req.Group == "") {
		errs, err := env.Groups.CommitOffsets(ctx, cr)
		answers.settle(errs, err, coordinatorAPIs)
	}
	for i, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = answers.code(i, j)
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
