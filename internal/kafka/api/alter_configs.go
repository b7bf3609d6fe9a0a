package api

// What AlterConfigs (33) and IncrementalAlterConfigs (44) share: one
// resource's changes, applied by whoever keeps that resource's configs.

import (
	"context"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
)

// alterResource applies ops to one resource and returns the answer's code
// and message. incremental: ops change what is set; otherwise they replace
// it (a config left out reverts to its default).
func alterResource(ctx context.Context, env *Env, conn *Conn, typ kmsg.ConfigResourceType, name string, ops []share.ConfigOp, incremental, validateOnly bool) (int16, *string) {
	fail := func(code int16, format string, args ...any) (int16, *string) {
		return code, kmsg.StringPtr(fmt.Sprintf(format, args...))
	}
	// ALTER_CONFIGS on the resource, as Kafka checks it.
	switch typ {
	case kmsg.ConfigResourceTypeBroker:
		if !allowedCluster(env, conn, security.OpAlterConfigs) {
			return kerr.ClusterAuthorizationFailed.Code, nil
		}
	case kmsg.ConfigResourceTypeGroupConfig:
		if !allowedGroup(env, conn, security.OpAlterConfigs, name) {
			return kerr.GroupAuthorizationFailed.Code, nil
		}
	case kmsg.ConfigResourceTypeTopic:
		if !allowedTopic(env, conn, security.OpAlterConfigs, name) {
			return kerr.TopicAuthorizationFailed.Code, nil
		}
	}
	if env.Share == nil {
		return kerr.CoordinatorNotAvailable.Code, nil
	}
	var resType int8
	switch typ {
	case kmsg.ConfigResourceTypeBroker:
		if name != "" && name != strconv.Itoa(int(env.NodeID)) {
			return fail(kerr.InvalidRequest.Code, "this is broker %d, not %q", env.NodeID, name)
		}
		// One node: its own dynamic values and the cluster-wide default
		// are the same thing.
		resType, name = share.ResourceBroker, ""
	case kmsg.ConfigResourceTypeGroupConfig:
		if name == "" {
			return fail(kerr.InvalidGroupID.Code, "a group config needs a group id")
		}
		resType = share.ResourceGroup
	case kmsg.ConfigResourceTypeTopic:
		return fail(kerr.InvalidRequest.Code, "altering topic configs is not supported yet; set them when creating the topic")
	default:
		return fail(kerr.InvalidRequest.Code, "resource type %v cannot be altered", typ)
	}
	if err := env.Share.AlterConfigs(ctx, resType, name, ops, incremental, validateOnly); err != nil {
		return shareCode(err), shareMessage(err)
	}
	return 0, nil
}
