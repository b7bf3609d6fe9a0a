package api

// OffsetFetch, versions 1–9.
//
// Returns committed offsets; a partition without one gets offset -1 and no
// error. Only fsynced commits are returned (the coordinator waits for the
// fsync of any commit still in flight), so a consumer never resumes from an
// offset a power loss could take back. librdkafka 2.0.2 needs v1 in range and
// kafka-go's Conn uses v1 (§2.2, §2.3); v10 (topic ids) is not advertised.
//
// Version notes:
//   - v1: per-partition errors only (a group-wide error is copied to every
//     partition).
//   - v2: Topics null = every partition the group has committed; a
//     top-level ErrorCode.
//   - v3: ThrottleMillis.
//   - v5: LeaderEpoch per partition (-1 when unknown).
//   - v6: flexible.
//   - v7: RequireStable: a partition with a pending transactional commit
//     gets offset -1 and UNSTABLE_OFFSET_COMMIT (the client retries) instead
//     of the offset committed before the transaction.
//   - v8: batched form: Groups, each with its own topics and error.
//   - v9: MemberID/MemberEpoch (KIP-848): for a consumer-protocol group a
//     request naming a member must name one that exists
//     (UNKNOWN_MEMBER_ID) at its current epoch (STALE_MEMBER_EPOCH; clients
//     retry after their next heartbeat); without a member (null id, epoch
//     < 0: an admin fetch) it is served. Ignored for classic groups.

import (
	"cmp"
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(9, 1, 9, handleOffsetFetch) }

// fetchedTopic is one topic of an answer in a version-neutral shape.
type fetchedTopic struct {
	topic string
	parts []fetchedPartition
}

type fetchedPartition struct {
	partition int32
	offset    group.Offset
	code      int16
}

// fetchGroup answers one group. topics nil means every committed partition.
// The principal needs DESCRIBE on the group (else GROUP_AUTHORIZATION_FAILED)
// and on each topic: a named topic it may not describe answers
// TOPIC_AUTHORIZATION_FAILED, and "all topics" leaves such topics out.
func fetchGroup(ctx context.Context, env *Env, conn *Conn, groupID string, topics map[string][]int32, order []string, all, requireStable bool) ([]fetchedTopic, int16) {
	if env.Groups == nil {
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	if !allowedGroup(env, conn, security.OpDescribe, groupID) {
		return nil, kerr.GroupAuthorizationFailed.Code
	}
	offs, err := env.Groups.FetchOffsets(ctx, groupID)
	if err != nil {
		return nil, errorCode(err, coordinatorAPIs)
	}
	none := group.Offset{Offset: -1, LeaderEpoch: -1}
	// answer turns what the coordinator has for a partition into the reply.
	answer := func(p int32, o group.Offset, ok bool) (fetchedPartition, bool) {
		switch {
		case !ok:
			return fetchedPartition{partition: p, offset: none}, true
		case o.Unstable && requireStable:
			return fetchedPartition{partition: p, offset: none, code: kerr.UnstableOffsetCommit.Code}, true
		case o.Unstable && o.Offset < 0:
			// Only a pending transactional commit: nothing committed yet.
			return fetchedPartition{partition: p, offset: none}, false
		}
		return fetchedPartition{partition: p, offset: o}, true
	}
	var out []fetchedTopic
	if all {
		byTopic := map[string]int{}
		for _, tp := range sortedTopicPartitions(offs) {
			fp, show := answer(tp.Partition, offs[tp], true)
			if !show || !allowedTopic(env, conn, security.OpDescribe, tp.Topic) {
				continue
			}
			i, ok := byTopic[tp.Topic]
			if !ok {
				i = len(out)
				byTopic[tp.Topic] = i
				out = append(out, fetchedTopic{topic: tp.Topic})
			}
			out[i].parts = append(out[i].parts, fp)
		}
		return out, 0
	}
	for _, t := range order {
		ft := fetchedTopic{topic: t}
		topicAllowed := allowedTopic(env, conn, security.OpDescribe, t)
		for _, p := range topics[t] {
			o, ok := offs[group.TopicPartition{Topic: t, Partition: p}]
			fp, _ := answer(p, o, ok)
			if !topicAllowed {
				fp = fetchedPartition{partition: p, offset: none, code: kerr.TopicAuthorizationFailed.Code}
			}
			ft.parts = append(ft.parts, fp)
		}
		out = append(out, ft)
	}
	return out, 0
}

func handleOffsetFetch(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, g := range req.Groups {
			topics, order := map[string][]int32{}, []string(nil)
			for _, t := range g.Topics {
				if _, ok := topics[t.Topic]; !ok {
					order = append(order, t.Topic)
				}
				topics[t.Topic] = append(topics[t.Topic], t.Partitions...)
			}
			var fts []fetchedTopic
			code := memberEpochCode(env, req.Version, g.Group, g.MemberID, g.MemberEpoch)
			if code == 0 {
				fts, code = fetchGroup(ctx, env, conn, g.Group, topics, order, g.Topics == nil, req.RequireStable)
			}
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group = g.Group
			rg.ErrorCode = code
			for _, ft := range fts {
				rt := kmsg.NewOffsetFetchResponseGroupTopic()
				rt.Topic = ft.topic
				for _, fp := range ft.parts {
					rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					rp.Partition = fp.partition
					rp.Offset = fp.offset.Offset
					rp.LeaderEpoch = fp.offset.LeaderEpoch
					rp.Metadata = kmsg.StringPtr(fp.offset.Metadata)
					rp.ErrorCode = fp.code
					rt.Partitions = append(rt.Partitions, rp)
				}
				rg.Topics = append(rg.Topics, rt)
			}
			resp.Groups = append(resp.Groups, rg)
		}
		return resp, nil
	}

	topics, order := map[string][]int32{}, []string(nil)
	for _, t := range req.Topics {
		if _, ok := topics[t.Topic]; !ok {
			order = append(order, t.Topic)
		}
		topics[t.Topic] = append(topics[t.Topic], t.Partitions...)
	}
	fts, code := fetchGroup(ctx, env, conn, req.Group, topics, order, req.Topics == nil && req.Version >= 2, req.RequireStable && req.Version >= 7)
	if code != 0 {
		if req.Version >= 2 {
			resp.ErrorCode = code
			return resp, nil
		}
		// v1 has no top-level error: answer every requested partition with it.
		fts = nil
		for _, t := range order {
			ft := fetchedTopic{topic: t}
			for _, p := range topics[t] {
				ft.parts = append(ft.parts, fetchedPartition{partition: p, offset: group.Offset{Offset: -1, LeaderEpoch: -1}, code: code})
			}
			fts = append(fts, ft)
		}
	}
	for _, ft := range fts {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = ft.topic
		for _, fp := range ft.parts {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition = fp.partition
			rp.Offset = fp.offset.Offset
			rp.LeaderEpoch = fp.offset.LeaderEpoch
			rp.Metadata = kmsg.StringPtr(fp.offset.Metadata)
			rp.ErrorCode = fp.code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

// memberEpochCode is OffsetFetch v9's member check (KIP-848).
func memberEpochCode(env *Env, version int16, groupID string, memberID *string, epoch int32) int16 {
	if version < 9 || env.Groups == nil {
		return 0
	}
	return errorCode(env.Groups.CheckMemberEpoch(groupID, deref(memberID), epoch), coordinatorAPIs)
}

func sortedTopicPartitions(offs map[group.TopicPartition]group.Offset) []group.TopicPartition {
	tps := make([]group.TopicPartition, 0, len(offs))
	for tp := range offs {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(a, b group.TopicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return tps
}
