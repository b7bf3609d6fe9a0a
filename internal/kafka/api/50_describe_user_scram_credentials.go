package api

// DescribeUserScramCredentials (key 50), version 0 (KIP-554).
//
// Behaviour: needs DESCRIBE on the cluster (else CLUSTER_AUTHORIZATION_FAILED
// for the request). A null or empty user list describes every user. Per
// user: the mechanisms and iterations of its credentials, never salts or
// keys; RESOURCE_NOT_FOUND for a user without credentials, and
// DUPLICATE_RESOURCE for a user named twice.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(50, 0, 0, handleDescribeUserScramCredentials) }

func handleDescribeUserScramCredentials(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !allowedCluster(env, conn, security.OpDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil
	}
	if env.Security == nil {
		return resp, nil
	}
	result := func(u security.UserInfo) kmsg.DescribeUserSCRAMCredentialsResponseResult {
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = u.Name
		for _, c := range u.Credentials {
			ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
			ci.Mechanism, ci.Iterations = int8(c.Mechanism), int32(c.Iterations)
			r.CredentialInfos = append(r.CredentialInfos, ci)
		}
		return r
	}
	if len(req.Users) == 0 {
		for _, u := range env.Security.Users() {
			resp.Results = append(resp.Results, result(u))
		}
		return resp, nil
	}
	count := map[string]int{}
	for _, u := range req.Users {
		count[u.Name]++
	}
	done := map[string]bool{}
	for _, ru := range req.Users {
		if done[ru.Name] {
			continue
		}
		done[ru.Name] = true
		u, ok := env.Security.User(ru.Name)
		r := result(u)
		r.User = ru.Name
		switch {
		case count[ru.Name] > 1:
			r.CredentialInfos = nil
			r.ErrorCode = kerr.DuplicateResource.Code
			r.ErrorMessage = errMessage(fmt.Errorf("user %q is named more than once", ru.Name))
		case !ok:
			r.ErrorCode = kerr.ResourceNotFound.Code
			r.ErrorMessage = errMessage(fmt.Errorf("user %q has no SCRAM credentials", ru.Name))
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
