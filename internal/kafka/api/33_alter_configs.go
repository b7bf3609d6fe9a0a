package api

// AlterConfigs, versions 0–2 (the legacy, non-incremental form).
//
// Behaviour:
//   - BROKER (4), named "" or this node's id: the configs given become the
//     broker's dynamic values, replacing every earlier one (a property left
//     out reverts to its static or default value). Only properties read
//     where they are used can be set (group.share.*, errors.deadletterqueue.*,
//     fetch.max.bytes, message.max.bytes, …; see DescribeConfigs' ReadOnly);
//     others get INVALID_CONFIG.
//   - GROUP (32): the group's configs (share.*, errors.deadletterqueue.*,
//     idem.share.*) are replaced by those given.
//   - TOPIC (2): not supported yet (INVALID_REQUEST); topic configs are set
//     at creation.
//   - Values are validated first; a resource changes all or nothing, and is
//     answered once the change is durable (the share log keeps dynamic
//     configs), taking effect at once. ValidateOnly checks without changing.
//
// Version notes: v1 same as v0; v2 flexible.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/share"
)

func init() { register(33, 0, 2, handleAlterConfigs) }

func handleAlterConfigs(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		ops := make([]share.ConfigOp, 0, len(rr.Configs))
		for _, c := range rr.Configs {
			op := share.ConfigOp{Name: c.Name, Value: c.Value, Op: share.OpSet}
			if c.Value == nil {
				op.Op = share.OpDelete
			}
			ops = append(ops, op)
		}
		sr.ErrorCode, sr.ErrorMessage = alterResource(ctx, env, conn, rr.ResourceType, rr.ResourceName, ops, false, req.ValidateOnly)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}
