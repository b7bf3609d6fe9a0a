package api

// AlterClientQuotas (key 49), versions 0–1 (KIP-546).
//
// Behaviour: needs ALTER_CONFIGS on the cluster (each entry
// CLUSTER_AUTHORIZATION_FAILED). Each entry sets or removes quotas of one
// entity (user, client-id, user+client-id, or ip; a null name is the
// default): producer_byte_rate, consumer_byte_rate, request_percentage and
// controller_mutation_rate for users and client ids, connection_creation_rate
// for ips. An entry with an unknown type or key, a key that does not fit
// the entity, or a value that is not positive is INVALID_REQUEST and
// changes nothing; the others apply (durably, before the answer) unless
// ValidateOnly. Quotas are enforced at once (ThrottleMillis and muting, see
// internal/kafka/throttle.go); controller_mutation_rate is stored but not
// enforced.
//
// Version notes: v1 is flexible.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(49, 0, 1, handleAlterClientQuotas) }

func handleAlterClientQuotas(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.AlterClientQuotasResponse)
	permitted := allowedCluster(env, conn, security.OpAlterConfigs)
	for _, re := range req.Entries {
		out := kmsg.NewAlterClientQuotasResponseEntry()
		var entity security.Entity
		for _, p := range re.Entity {
			oe := kmsg.NewAlterClientQuotasResponseEntryEntity()
			oe.Type, oe.Name = p.Type, p.Name
			out.Entity = append(out.Entity, oe)
			entity = append(entity, security.EntityPart{Type: p.Type, Name: p.Name})
		}
		var changes []security.QuotaChange
		for _, op := range re.Ops {
			changes = append(changes, security.QuotaChange{Entity: entity, Key: op.Key, Value: op.Value, Remove: op.Remove})
		}
		var err error
		switch {
		case !permitted:
			out.ErrorCode, out.ErrorMessage = kerr.ClusterAuthorizationFailed.Code, errMessage(errClusterAuthorization)
		case env.Security == nil:
			err = security.ErrClosed
		default:
			err = env.Security.AlterQuotas(ctx, changes, req.ValidateOnly)
		}
		if err != nil {
			out.ErrorCode, out.ErrorMessage = errorCode(err, dataAPIs), errMessage(err)
		}
		resp.Entries = append(resp.Entries, out)
	}
	return resp, nil
}
