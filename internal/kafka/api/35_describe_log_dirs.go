package api

// DescribeLogDirs, versions 0–4.
//
// One log directory (log.dirs) holds every partition. Topics null means all
// topics; unknown topics and partitions are left out, as Kafka does. Size is
// the partition's segment bytes; OffsetLag is 0 and IsFuture false (there are
// no replica moves). v4's TotalBytes/UsableBytes are -1 (not measured).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(35, 0, 4, handleDescribeLogDirs) }

func handleDescribeLogDirs(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeLogDirsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	if !allowedCluster(env, conn, security.OpDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code // v3+; older versions see no directories
		return resp, nil
	}
	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.Dir = env.Config.String("log.dirs")
	dir.TotalBytes, dir.UsableBytes = -1, -1
	add := func(topic string, parts []int32) {
		t, ok := env.Partitions.Topic(topic)
		if !ok {
			return
		}
		if parts == nil {
			for i := int32(0); i < t.Partitions; i++ {
				parts = append(parts, i)
			}
		}
		dt := kmsg.NewDescribeLogDirsResponseDirTopic()
		dt.Topic = topic
		for _, i := range parts {
			p, ok := env.Partitions.Partition(topic, i)
			if !ok {
				continue
			}
			dp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			dp.Partition, dp.Size = i, p.SizeBytes()
			dt.Partitions = append(dt.Partitions, dp)
		}
		dir.Topics = append(dir.Topics, dt)
	}
	if req.Topics == nil {
		for _, t := range env.Partitions.Topics() {
			add(t.Name, nil)
		}
	} else {
		for _, rt := range req.Topics {
			add(rt.Topic, rt.Partitions)
		}
	}
	resp.Dirs = append(resp.Dirs, dir)
	return resp, nil
}
