package api

// DescribeShareGroupOffsets, versions 0–1 (v1 adds Lag, KIP-1226).
//
// Per group and partition: StartOffset is the share-partition start offset
// (every record below it is acknowledged or archived), -1 when the group
// has no state for the partition; Lag is the high watermark minus the start
// offset minus the records already done inside the in-flight window (-1
// without state). Topics null describes every partition the group has
// state for. A group id that is not a share group gets GROUP_ID_NOT_FOUND;
// an unknown topic UNKNOWN_TOPIC_OR_PARTITION on its partitions.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
)

func init() { register(90, 0, 1, handleDescribeShareGroupOffsets) }

func handleDescribeShareGroupOffsets(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeShareGroupOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeShareGroupOffsetsResponse)
	for _, rg := range req.Groups {
		g := kmsg.NewDescribeShareGroupOffsetsResponseGroup()
		g.GroupID = rg.GroupID
		if !allowedGroup(env, conn, security.OpDescribe, rg.GroupID) {
			g.ErrorCode = kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, g)
			continue
		}
		if env.Share == nil {
			g.ErrorCode = kerr.CoordinatorNotAvailable.Code
			resp.Groups = append(resp.Groups, g)
			continue
		}
		var tps []share.TopicPartition
		unknown := map[string][]int32{}
		if rg.Topics != nil {
			tps = []share.TopicPartition{}
			for _, t := range rg.Topics {
				id, _, ok := env.Share.TopicID(t.Topic)
				if !ok {
					unknown[t.Topic] = t.Partitions
					continue
				}
				for _, p := range t.Partitions {
					tps = append(tps, share.TopicPartition{TopicID: id, Partition: p})
				}
			}
		}
		offs, err := env.Share.DescribeOffsets(rg.GroupID, tps)
		if err != nil {
			g.ErrorCode, g.ErrorMessage = shareCode(err), shareMessage(err)
			resp.Groups = append(resp.Groups, g)
			continue
		}
		idx := map[[16]byte]int{}
		for _, o := range offs {
			i, ok := idx[o.TopicID]
			if !ok {
				i = len(g.Topics)
				idx[o.TopicID] = i
				t := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopic()
				t.TopicID, t.Topic = o.TopicID, o.Topic
				g.Topics = append(g.Topics, t)
			}
			p := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopicPartition()
			p.Partition, p.StartOffset, p.LeaderEpoch, p.Lag = o.Partition, o.StartOffset, 0, o.Lag
			if o.Topic == "" {
				p.ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
			g.Topics[i].Partitions = append(g.Topics[i].Partitions, p)
		}
		for _, name := range sortedStringKeys(unknown) {
			t := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopic()
			t.Topic = name
			for _, part := range unknown[name] {
				p := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopicPartition()
				p.Partition, p.StartOffset, p.Lag = part, -1, -1
				p.ErrorCode = kerr.UnknownTopicOrPartition.Code
				t.Partitions = append(t.Partitions, p)
			}
			g.Topics = append(g.Topics, t)
		}
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}
