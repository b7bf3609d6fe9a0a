package api

// DescribeAcls (key 29), versions 0–3.
//
// Behaviour: needs DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED).
// Without an authorizer it is SECURITY_DISABLED, as in Kafka. The filter's
// ANY values and null strings match everything; pattern MATCH returns the
// bindings that apply to the named resource (literal equal, literal *,
// prefixed by). A filter with unknown enum values is INVALID_REQUEST.
// Bindings are grouped by resource.
//
// Version notes: v0 knows no pattern types and means LITERAL; v1 adds
// them (KIP-290); v2 is flexible; v3 adds the USER resource type.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(29, 0, 3, handleDescribeAcls) }

func handleDescribeAcls(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	switch {
	case env.Authorizer == nil:
		resp.ErrorCode = kerr.SecurityDisabled.Code
		resp.ErrorMessage = errMessage(errNoAuthorizer)
		return resp, nil
	case !allowedCluster(env, conn, security.OpDescribe):
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		resp.ErrorMessage = errMessage(errClusterAuthorization)
		return resp, nil
	}
	f := aclFilter(req.Version, req.ResourceType, req.ResourceName, req.ResourcePatternType, req.Principal, req.Host, req.Operation, req.PermissionType)
	if err := f.Validate(); err != nil {
		resp.ErrorCode = kerr.InvalidRequest.Code
		resp.ErrorMessage = errMessage(err)
		return resp, nil
	}
	type resKey struct {
		rt   security.ResourceType
		name string
		pt   security.PatternType
	}
	at := map[resKey]int{}
	for _, b := range env.Security.ACLs(f) {
		k := resKey{b.ResourceType, b.ResourceName, b.PatternType}
		i, ok := at[k]
		if !ok {
			r := kmsg.NewDescribeACLsResponseResource()
			r.ResourceType, r.ResourceName, r.ResourcePatternType = kmsg.ACLResourceType(k.rt), k.name, kmsg.ACLResourcePatternType(k.pt)
			resp.Resources = append(resp.Resources, r)
			i = len(resp.Resources) - 1
			at[k] = i
		}
		a := kmsg.NewDescribeACLsResponseResourceACL()
		a.Principal, a.Host, a.Operation, a.PermissionType = b.Principal, b.Host, kmsg.ACLOperation(b.Operation), kmsg.ACLPermissionType(b.Permission)
		resp.Resources[i].ACLs = append(resp.Resources[i].ACLs, a)
	}
	return resp, nil
}
