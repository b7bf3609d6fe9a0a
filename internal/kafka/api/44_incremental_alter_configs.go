package api

// IncrementalAlterConfigs, versions 0–1 (KIP-339).
//
// Behaviour:
//   - Per config an operation: SET (0) and DELETE (1); APPEND (2) and
//     SUBTRACT (3) apply only to list configs, and no alterable config is a
//     list, so they get INVALID_CONFIG. A config named twice is
//     INVALID_REQUEST.
//   - BROKER (4), named "" or this node's id: dynamic broker values (see
//     AlterConfigs for which properties can change).
//   - GROUP (32): group configs (share.auto.offset.reset,
//     share.record.lock.duration.ms, share.delivery.count.limit,
//     share.isolation.level, share.partition.max.record.locks,
//     share.session.timeout.ms, share.heartbeat.interval.ms,
//     share.renew.acknowledge.enable, errors.deadletterqueue.topic.name and
//     .copy.record.enable, idem.share.release.backoff.*); unknown names and
//     values out of range (the broker's group.share.min/max bounds) get
//     INVALID_CONFIG. Naming a dead-letter topic checks KIP-1191's rules:
//     the errors.deadletterqueue.topic.name.prefix, and an existing topic
//     must have errors.deadletterqueue.group.enable=true, a missing one must
//     be auto-creatable.
//   - TOPIC (2): not supported yet (INVALID_REQUEST).
//   - A resource changes all or nothing and is answered once the change is
//     durable; it takes effect at once. ValidateOnly checks only.
//
// Version notes: v1 is flexible.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/share"
)

func init() { register(44, 0, 1, handleIncrementalAlterConfigs) }

func handleIncrementalAlterConfigs(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		ops := make([]share.ConfigOp, 0, len(rr.Configs))
		for _, c := range rr.Configs {
			ops = append(ops, share.ConfigOp{Name: c.Name, Value: c.Value, Op: int8(c.Op)})
		}
		sr.ErrorCode, sr.ErrorMessage = alterResource(ctx, env, conn, rr.ResourceType, rr.ResourceName, ops, true, req.ValidateOnly)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}
