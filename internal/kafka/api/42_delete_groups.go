package api

// DeleteGroups, versions 0–2.
//
// Deletes groups without members together with their committed offsets; the
// answer comes after the deletion is fsynced, so a deleted group does not
// come back after a crash. Errors per group: GROUP_ID_NOT_FOUND,
// NON_EMPTY_GROUP, INVALID_GROUP_ID.
//
// Version notes:
//   - v1: same as v0.
//   - v2: flexible.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(42, 0, 2, handleDeleteGroups) }

func handleDeleteGroups(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	var errs []error
	var permitted []string
	for _, id := range req.Groups {
		if allowedGroup(env, conn, security.OpDelete, id) {
			permitted = append(permitted, id)
		}
	}
	if env.Groups != nil && len(permitted) > 0 {
		errs = env.Groups.DeleteGroups(ctx, permitted)
	}
	k := 0
	for _, id := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = id
		switch {
		case !allowedGroup(env, conn, security.OpDelete, id):
			rg.ErrorCode = kerr.GroupAuthorizationFailed.Code
		case env.Groups == nil:
			rg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		default:
			rg.ErrorCode = errorCode(errs[k], coordinatorAPIs)
			k++
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
