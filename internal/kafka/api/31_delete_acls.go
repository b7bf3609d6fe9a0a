package api

// DeleteAcls (key 31), versions 0–3.
//
// Behaviour: needs ALTER on the cluster (each filter's result
// CLUSTER_AUTHORIZATION_FAILED). Without an authorizer each result is
// SECURITY_DISABLED. Each filter deletes what it matches (as in
// DescribeAcls, MATCH included) and lists it; a filter with unknown enum
// values is INVALID_REQUEST and deletes nothing. The deletions are durable
// before the answer.
//
// Version notes: as DescribeAcls.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(31, 0, 3, handleDeleteAcls) }

func handleDeleteAcls(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	resp.Results = make([]kmsg.DeleteACLsResponseResult, len(req.Filters))
	for i := range resp.Results {
		resp.Results[i] = kmsg.NewDeleteACLsResponseResult()
	}
	failAll := func(code int16, err error) (kmsg.Response, error) {
		for i := range resp.Results {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = code, errMessage(err)
		}
		return resp, nil
	}
	switch {
	case env.Authorizer == nil:
		return failAll(kerr.SecurityDisabled.Code, errNoAuthorizer)
	case !allowedCluster(env, conn, security.OpAlter):
		return failAll(kerr.ClusterAuthorizationFailed.Code, errClusterAuthorization)
	}
	var filters []security.Filter
	var at []int
	for i, rf := range req.Filters {
		f := aclFilter(req.Version, rf.ResourceType, rf.ResourceName, rf.ResourcePatternType, rf.Principal, rf.Host, rf.Operation, rf.PermissionType)
		if err := f.Validate(); err != nil {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = kerr.InvalidRequest.Code, errMessage(err)
			continue
		}
		filters = append(filters, f)
		at = append(at, i)
	}
	deleted, err := env.Security.DeleteACLs(ctx, filters)
	if err != nil {
		for _, i := range at {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = errorCode(err, dataAPIs), errMessage(err)
		}
		return resp, nil
	}
	for k, bs := range deleted {
		r := &resp.Results[at[k]]
		for _, b := range bs {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = kmsg.ACLResourceType(b.ResourceType), b.ResourceName, kmsg.ACLResourcePatternType(b.PatternType)
			m.Principal, m.Host = b.Principal, b.Host
			m.Operation, m.PermissionType = kmsg.ACLOperation(b.Operation), kmsg.ACLPermissionType(b.Permission)
			r.MatchingACLs = append(r.MatchingACLs, m)
		}
	}
	return resp, nil
}
