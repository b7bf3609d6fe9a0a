package api

// CreateAcls (key 30), versions 0–3.
//
// Behaviour: needs ALTER on the cluster (each result
// CLUSTER_AUTHORIZATION_FAILED). Without an authorizer each result is
// SECURITY_DISABLED. A binding must be concrete: a resource type other than
// ANY, a LITERAL or PREFIXED pattern, an operation other than ANY, ALLOW
// or DENY, a Type:name principal, a host (* for any), and the cluster
// resource named kafka-cluster; otherwise INVALID_REQUEST with the reason.
// Creating an existing binding succeeds. Bindings are durable before the
// answer and apply at once to every open connection.
//
// Version notes: v0 bindings are LITERAL; v1 adds pattern types; v2 is
// flexible; v3 adds the USER resource type.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(30, 0, 3, handleCreateAcls) }

func handleCreateAcls(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	code, err := int16(0), error(nil)
	switch {
	case env.Authorizer == nil:
		code, err = kerr.SecurityDisabled.Code, errNoAuthorizer
	case !allowedCluster(env, conn, security.OpAlter):
		code, err = kerr.ClusterAuthorizationFailed.Code, errClusterAuthorization
	}
	if code != 0 {
		for range req.Creations {
			r := kmsg.NewCreateACLsResponseResult()
			r.ErrorCode, r.ErrorMessage = code, errMessage(err)
			resp.Results = append(resp.Results, r)
		}
		return resp, nil
	}
	bindings := make([]security.Binding, len(req.Creations))
	for i, c := range req.Creations {
		bindings[i] = security.Binding{
			ResourceType: security.ResourceType(c.ResourceType),
			ResourceName: c.ResourceName,
			PatternType:  patternFor(req.Version, c.ResourcePatternType),
			Principal:    c.Principal,
			Host:         c.Host,
			Operation:    security.Operation(c.Operation),
			Permission:   security.Permission(c.PermissionType),
		}
	}
	for _, err := range env.Security.CreateACLs(ctx, bindings) {
		r := kmsg.NewCreateACLsResponseResult()
		r.ErrorCode, r.ErrorMessage = errorCode(err, dataAPIs), errMessage(err)
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
