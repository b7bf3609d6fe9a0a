package api

// What AlterConfigs (33) and IncrementalAlterConfigs (44) share: one
// resource's changes, applied by whoever keeps that resource's configs.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
)

// alterTopic changes a topic's config overrides: they are kept in the
// catalog (and topic.json), and the topic manager applies them to the open
// partitions and the cleaner at once.
func alterTopic(env *Env, name string, ops []share.ConfigOp, incremental, validateOnly bool) (int16, *string) {
	fail := func(err error) (int16, *string) { return errorCode(err, dataAPIs), errMessage(err) }
	if isInternalTopic(env, name) {
		return fail(fmt.Errorf("%w: %s", errInternalTopic, name))
	}
	t, ok := env.Partitions.Topic(name)
	if !ok {
		return fail(fmt.Errorf("%w: %q", catalog.ErrUnknownTopic, name))
	}
	next := map[string]string{}
	if incremental {
		next = maps.Clone(t.Configs)
		if next == nil {
			next = map[string]string{}
		}
	}
	seen := map[string]bool{}
	for _, op := range ops {
		if seen[op.Name] {
			return kerr.InvalidRequest.Code, kmsg.StringPtr(op.Name + " is named twice")
		}
		seen[op.Name] = true
		p, ok := config.LookupTopic(op.Name)
		if !ok {
			return fail(fmt.Errorf("%w %q for a topic", config.ErrUnknown, op.Name))
		}
		switch op.Op {
		case share.OpSet:
			if op.Value == nil {
				return kerr.InvalidConfig.Code, kmsg.StringPtr(op.Name + ": null value")
			}
			next[op.Name] = *op.Value
		case share.OpDelete:
			delete(next, op.Name)
		case share.OpAppend, share.OpSubtract:
			if p.Type != config.List || op.Value == nil {
				return kerr.InvalidConfig.Code, kmsg.StringPtr(op.Name + " is not a list; APPEND and SUBTRACT apply only to lists")
			}
			cur, set := next[op.Name]
			if !set {
				cur, _ = env.Config.Value(p.Name)
			}
			next[op.Name] = editList(cur, *op.Value, op.Op == share.OpAppend)
		default:
			return kerr.InvalidRequest.Code, kmsg.StringPtr(fmt.Sprintf("config operation %d", op.Op))
		}
	}
	if err := catalog.ValidateConfigs(next); err != nil {
		return fail(err)
	}
	if validateOnly {
		return 0, nil
	}
	if _, err := env.Partitions.SetTopicConfigs(name, next); err != nil {
		return fail(err)
	}
	return 0, nil
}

// editList appends items to (or removes them from) a comma-separated list.
func editList(list, items string, add bool) string {
	var out []string
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	for _, it := range strings.Split(items, ",") {
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		i := slices.Index(out, it)
		switch {
		case add && i < 0:
			out = append(out, it)
		case !add && i >= 0:
			out = slices.Delete(out, i, i+1)
		}
	}
	return strings.Join(out, ",")
}

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
		return alterTopic(env, name, ops, incremental, validateOnly)
	default:
		return fail(kerr.InvalidRequest.Code, "resource type %v cannot be altered", typ)
	}
	if err := env.Share.AlterConfigs(ctx, resType, name, ops, incremental, validateOnly); err != nil {
		return shareCode(err), shareMessage(err)
	}
	return 0, nil
}
