package api

// AlterUserScramCredentials (key 51), version 0 (KIP-554).
//
// Behaviour: needs ALTER on the cluster (else every user's result is
// CLUSTER_AUTHORIZATION_FAILED). Upsertions carry the salted password the
// client computed (PBKDF2), so the password never reaches the broker; the
// broker keeps only the salt and the derived StoredKey and ServerKey, in
// the durable security store, and answers after they are fsynced. One
// result per user: DUPLICATE_RESOURCE for a user altered twice in one
// request (deletion and upsertion of the same mechanism included),
// UNACCEPTABLE_CREDENTIAL for an empty name or iterations outside
// 4096..16384, UNSUPPORTED_SASL_MECHANISM for an unknown mechanism,
// RESOURCE_NOT_FOUND for deleting a credential that does not exist. The
// users without an error are changed; the others are not.
//
// Version notes: kgo sends it to the controller, which Metadata says idem
// is.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(51, 0, 0, handleAlterUserScramCredentials) }

func handleAlterUserScramCredentials(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	var order []string
	errs := map[string]error{}
	seen := map[string]bool{}
	note := func(user string, err error) {
		if !seen[user] {
			seen[user] = true
			order = append(order, user)
		}
		if errs[user] == nil {
			errs[user] = err
		}
	}
	type key struct {
		user string
		mech int8
	}
	twice := map[key]int{}
	for _, d := range req.Deletions {
		twice[key{d.Name, d.Mechanism}]++
	}
	for _, u := range req.Upsertions {
		twice[key{u.Name, u.Mechanism}]++
	}
	var changes []security.CredentialChange
	var owners []string
	check := func(user string, mech int8) (security.ScramMechanism, bool) {
		m := security.ScramMechanism(mech)
		switch {
		case !allowedCluster(env, conn, security.OpAlter):
			note(user, errClusterAuthorization)
		case twice[key{user, mech}] > 1:
			note(user, fmt.Errorf("%w: the %s credential of %q is altered more than once", security.ErrDuplicate, m, user))
		case user == "":
			note(user, fmt.Errorf("%w: empty user name", security.ErrUnacceptableCredential))
		case !m.Valid():
			note(user, fmt.Errorf("%w: SCRAM mechanism %d", security.ErrUnsupportedMechanism, mech))
		default:
			note(user, nil)
			return m, true
		}
		return 0, false
	}
	for _, d := range req.Deletions {
		if m, ok := check(d.Name, d.Mechanism); ok {
			changes = append(changes, security.CredentialChange{User: d.Name, Mechanism: m, Delete: true})
			owners = append(owners, d.Name)
		}
	}
	for _, u := range req.Upsertions {
		m, ok := check(u.Name, u.Mechanism)
		if !ok {
			continue
		}
		cred, err := security.CredentialFromSalted(m, int(u.Iterations), u.Salt, u.SaltedPassword)
		if err != nil {
			note(u.Name, err)
			continue
		}
		changes = append(changes, security.CredentialChange{User: u.Name, Mechanism: m, Credential: &cred})
		owners = append(owners, u.Name)
	}
	// A user with any refused change is not changed at all.
	var apply []security.CredentialChange
	var applyOwners []string
	for i, c := range changes {
		if errs[owners[i]] == nil {
			apply = append(apply, c)
			applyOwners = append(applyOwners, owners[i])
		}
	}
	if len(apply) > 0 {
		if env.Security == nil {
			for _, u := range applyOwners {
				note(u, security.ErrClosed)
			}
		} else {
			for i, err := range env.Security.AlterCredentials(ctx, apply) {
				if err != nil {
					note(applyOwners[i], err)
				}
			}
		}
	}
	for _, user := range order {
		r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		r.User = user
		if err := errs[user]; err != nil {
			r.ErrorCode = errorCode(err, dataAPIs)
			if err == errClusterAuthorization {
				r.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			}
			r.ErrorMessage = errMessage(err)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
