package api

// DeleteGroups, versions 0–2.
//
// Deletes groups without members together with their committed offsets (a
// share group with its share-partition state), and their group configs;
// the answer comes after the deletion is fsynced, so a deleted group does
// not come back after a crash. Errors per group: GROUP_ID_NOT_FOUND,
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
	// Groups the principal may not DELETE are refused and reach no
	// coordinator; share groups go to the share coordinator, the rest to
	// the classic one.
	var classic []string
	shareErr := map[string]error{}
	for _, id := range req.Groups {
		switch {
		case !allowedGroup(env, conn, security.OpDelete, id):
		case env.Share != nil && env.Share.IsGroup(id):
			shareErr[id] = env.Share.DeleteGroup(ctx, id)
		default:
			classic = append(classic, id)
		}
	}
	var errs []error
	if env.Groups != nil && len(classic) > 0 {
		errs = env.Groups.DeleteGroups(ctx, classic)
	}
	for _, id := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = id
		if !allowedGroup(env, conn, security.OpDelete, id) {
			rg.ErrorCode = kerr.GroupAuthorizationFailed.Code
		} else if err, ok := shareErr[id]; ok {
			rg.ErrorCode = shareCode(err)
		} else if env.Groups == nil {
			rg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		} else {
			err := errs[0]
			errs = errs[1:]
			rg.ErrorCode = errorCode(err, coordinatorAPIs)
			if err == nil && env.Share != nil {
				// A deleted group's configs go with it.
				if err := env.Share.DeleteGroupConfigs(ctx, id); err != nil {
					rg.ErrorCode = shareCode(err)
				}
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
