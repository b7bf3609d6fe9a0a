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
)

func init() { register(42, 0, 2, handleDeleteGroups) }

func handleDeleteGroups(ctx context.Context, env *Env, _ *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	var errs []error
	if env.Groups != nil {
		errs = env.Groups.DeleteGroups(ctx, req.Groups)
	}
	for i, id := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = id
		if env.Groups == nil {
			rg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		} else {
			rg.ErrorCode = errorCode(errs[i], coordinatorAPIs)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
