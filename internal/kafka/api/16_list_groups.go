package api

// ListGroups, versions 0–5.
//
// Lists every group the coordinators know (all of them: one node is the
// coordinator of every group): classic consumer groups, then share groups
// (ProtocolType and GroupType "share", state Empty or Stable).
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: flexible.
//   - v4: StatesFilter (case-insensitive Kafka state names; an unknown name
//     matches nothing) and GroupState in the response.
//   - v5: TypesFilter ("classic", "consumer", "share"; case-insensitive;
//     an unknown type matches nothing) and GroupType. KIP-848 groups list
//     with ProtocolType "consumer" and their own states (Assigning,
//     Reconciling besides Empty and Stable); share groups with ProtocolType
//     and GroupType "share", state Empty or Stable.

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(16, 0, 5, handleListGroups) }

func handleListGroups(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	if env.Groups == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	var types []string
	if req.Version >= 5 {
		types = req.TypesFilter
	}
	wantShare := len(types) == 0 || slices.ContainsFunc(types, func(t string) bool { return strings.EqualFold(t, "share") })
	var states []group.State
	shareStates := map[string]bool{}
	listGroups := true
	if req.Version >= 4 && len(req.StatesFilter) > 0 {
		for _, name := range req.StatesFilter {
			if s, ok := group.ParseState(name); ok {
				states = append(states, s)
			}
			shareStates[strings.ToLower(name)] = true
		}
		listGroups = len(states) > 0
	}
	// DESCRIBE on the cluster shows every group; otherwise only the groups
	// the principal may DESCRIBE are listed, and the others are left out
	// silently (their names are not told).
	all := allowedCluster(env, conn, security.OpDescribe)
	if listGroups {
		for _, l := range env.Groups.ListGroups(states, types...) {
			if !all && !allowedGroup(env, conn, security.OpDescribe, l.Group) {
				continue
			}
			rg := kmsg.NewListGroupsResponseGroup()
			rg.Group = l.Group
			rg.ProtocolType = l.ProtocolType
			rg.GroupState = l.State.String()
			rg.GroupType = l.Type
			resp.Groups = append(resp.Groups, rg)
		}
	}
	if wantShare && env.Share != nil {
		for _, l := range env.Share.ListGroups() {
			if len(shareStates) > 0 && !shareStates[strings.ToLower(l.State)] {
				continue
			}
			if !all && !allowedGroup(env, conn, security.OpDescribe, l.Group) {
				continue
			}
			rg := kmsg.NewListGroupsResponseGroup()
			rg.Group, rg.ProtocolType, rg.GroupState, rg.GroupType = l.Group, "share", l.State, "share"
			resp.Groups = append(resp.Groups, rg)
		}
	}
	return resp, nil
}
