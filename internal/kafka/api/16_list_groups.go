package api

// ListGroups, versions 0–4.
//
// Lists every group the coordinator knows (all of them: one node is the
// coordinator of every group).
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: flexible.
//   - v4: StatesFilter (case-insensitive Kafka state names; an unknown name
//     matches nothing) and GroupState in the response.
//   - v5 (TypesFilter, GroupType) is not advertised: only classic groups exist.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(16, 0, 4, handleListGroups) }

func handleListGroups(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	if env.Groups == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	var states []group.State
	if req.Version >= 4 && len(req.StatesFilter) > 0 {
		for _, name := range req.StatesFilter {
			if s, ok := group.ParseState(name); ok {
				states = append(states, s)
			}
		}
		if len(states) == 0 {
			return resp, nil
		}
	}
	// DESCRIBE on the cluster shows every group; otherwise only the groups
	// the principal may DESCRIBE are listed, and the others are left out
	// silently (their names are not told).
	all := allowedCluster(env, conn, security.OpDescribe)
	for _, l := range env.Groups.ListGroups(states) {
		if !all && !allowedGroup(env, conn, security.OpDescribe, l.Group) {
			continue
		}
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group = l.Group
		rg.ProtocolType = l.ProtocolType
		rg.GroupState = l.State.String()
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
