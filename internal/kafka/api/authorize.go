package api

// Authorization helpers: every handler checks its resources through these,
// one call per resource, as the table in docs/security.md (Kafka's
// per-API ACL table) says. Without an authorizer (authorizer.class.name
// empty) everything is allowed, as in Kafka.

import (
	"errors"

	"github.com/idem-dev/idem/internal/security"
)

// allowed reports whether the connection's principal may do op on the
// resource (rt, name).
func allowed(env *Env, conn *Conn, op security.Operation, rt security.ResourceType, name string) bool {
	if env.Authorizer == nil {
		return true
	}
	return env.Authorizer.Authorize(conn.Principal, conn.Host, op, rt, name)
}

// allowedCluster is allowed on the one cluster resource.
func allowedCluster(env *Env, conn *Conn, op security.Operation) bool {
	return allowed(env, conn, op, security.ResourceCluster, security.ClusterName)
}

func allowedTopic(env *Env, conn *Conn, op security.Operation, topic string) bool {
	return allowed(env, conn, op, security.ResourceTopic, topic)
}

func allowedGroup(env *Env, conn *Conn, op security.Operation, group string) bool {
	return allowed(env, conn, op, security.ResourceGroup, group)
}

func allowedTxnID(env *Env, conn *Conn, op security.Operation, id string) bool {
	return allowed(env, conn, op, security.ResourceTransactionalID, id)
}

// errClusterAuthorization is the message of a CLUSTER_AUTHORIZATION_FAILED
// answer.
var errClusterAuthorization = errors.New("cluster authorization failed: the principal lacks the ACL this request needs")

// errNoAuthorizer is the message of SECURITY_DISABLED.
var errNoAuthorizer = errors.New("no authorizer is configured (set authorizer.class.name=idem)")

// The operations Kafka reports in AuthorizedOperations, per resource type
// (KIP-430).
var (
	topicOps   = []security.Operation{security.OpRead, security.OpWrite, security.OpCreate, security.OpDelete, security.OpAlter, security.OpDescribe, security.OpDescribeConfigs, security.OpAlterConfigs}
	groupOps   = []security.Operation{security.OpRead, security.OpDescribe, security.OpDelete, security.OpDescribeConfigs, security.OpAlterConfigs}
	clusterOps = []security.Operation{security.OpCreate, security.OpAlter, security.OpDescribe, security.OpClusterAction, security.OpDescribeConfigs, security.OpAlterConfigs, security.OpIdempotentWrite}
)

// authorizedOps is the AuthorizedOperations bit field (1<<operation) of
// what the principal may do on the resource.
func authorizedOps(env *Env, conn *Conn, rt security.ResourceType, name string, ops []security.Operation) int32 {
	var bits int32
	for _, op := range ops {
		if allowed(env, conn, op, rt, name) {
			bits |= 1 << op
		}
	}
	return bits
}
