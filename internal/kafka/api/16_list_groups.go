package api

// ListGroups, versions 0–5.
//
// Lists every group the coordinator knows (all of them: one node is the
// coordinator of every group).
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: flexible.
//   - v4: StatesFilter (case-insensitive Kafka state names; an unknown name
//     matches nothing) and GroupState in the response.
//   - v5: TypesFilter ("classic", "consumer"; case-insensitive) and
//     GroupType. KIP-848 groups list with ProtocolType "consumer" and their
//     own states (Assigning, Reconciling besides Empty and Stable).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
)

func init() { register(16, 0, 5, handleListGroups) }

func handleListGroups(_ context.Context, env *Env, _ *Conn, kreq kmsg.Request) (kmsg.Response, error) {
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
	var types []string
	if req.Version >= 5 {
		types = req.TypesFilter
	}
	for _, l := range env.Groups.ListGroups(states, types...) {
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group = l.Group
		rg.ProtocolType = l.ProtocolType
		rg.GroupState = l.State.String()
		rg.GroupType = l.Type
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
