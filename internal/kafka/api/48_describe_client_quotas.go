package api

// DescribeClientQuotas (key 48), versions 0–1 (KIP-546).
//
// Behaviour: needs DESCRIBE_CONFIGS on the cluster
// (CLUSTER_AUTHORIZATION_FAILED). Entities are user, client-id and ip; a
// null name is the type's default entity. Each filter component selects by
// exact name (null: the default), the default, or any named entity; Strict
// leaves out entities with types the filter does not name. An unknown
// entity or match type, or a type named twice, is INVALID_REQUEST.
//
// Version notes: v1 is flexible.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(48, 0, 1, handleDescribeClientQuotas) }

func handleDescribeClientQuotas(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClientQuotasResponse)
	if !allowedCluster(env, conn, security.OpDescribeConfigs) {
		resp.ErrorCode, resp.ErrorMessage = kerr.ClusterAuthorizationFailed.Code, errMessage(errClusterAuthorization)
		return resp, nil
	}
	components := make([]security.QuotaFilterComponent, len(req.Components))
	for i, c := range req.Components {
		components[i] = security.QuotaFilterComponent{Type: c.EntityType, Match: int8(c.MatchType), Name: c.Match}
	}
	if err := security.ValidateQuotaFilter(components); err != nil {
		resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, errMessage(err)
		return resp, nil
	}
	if env.Security == nil {
		return resp, nil
	}
	for _, q := range env.Security.Quotas() {
		if !q.Matches(components, req.Strict) {
			continue
		}
		e := kmsg.NewDescribeClientQuotasResponseEntry()
		for _, p := range q.Entity {
			ee := kmsg.NewDescribeClientQuotasResponseEntryEntity()
			ee.Type, ee.Name = p.Type, p.Name
			e.Entity = append(e.Entity, ee)
		}
		for k, v := range q.Values {
			ev := kmsg.NewDescribeClientQuotasResponseEntryValue()
			ev.Key, ev.Value = k, v
			e.Values = append(e.Values, ev)
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, nil
}
