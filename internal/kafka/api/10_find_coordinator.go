package api

// FindCoordinator, versions 0–6.
//
// v0 must stay in range: librdkafka 2.0.2 needs it for its group-coordinator,
// consumer-group and LZ4 features, and kafka-go's Conn sends v0. v4+ batch the
// keys (CoordinatorKeys); v0–3 carry one key.
//
// A single node coordinates everything, so every group (key type 0; share
// groups too, as kgo routes them) and transactional id (key type 1) maps to
// this node, with the same node id, host and port as Metadata. Key type 2
// (the share-state coordinator of KIP-932, "group:topicId:partition", v6+)
// also maps here; its key must have that shape. An empty key or an unknown
// key type gives INVALID_REQUEST.

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(10, 0, 6, handleFindCoordinator) }

func handleFindCoordinator(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	check := func(key string) int16 {
		switch {
		case req.CoordinatorType == 2 && (req.GetVersion() < 6 || strings.Count(key, ":") < 2):
			return kerr.InvalidRequest.Code
		case req.CoordinatorType < 0 || req.CoordinatorType > 2:
			return kerr.InvalidRequest.Code
		case key == "":
			return kerr.InvalidRequest.Code
		case req.CoordinatorType == 0 && !allowedGroup(env, conn, security.OpDescribe, key):
			return kerr.GroupAuthorizationFailed.Code
		case req.CoordinatorType == 1 && !allowedTxnID(env, conn, security.OpDescribe, key):
			return kerr.TransactionalIDAuthorizationFailed.Code
		}
		return 0
	}
	if req.GetVersion() < 4 {
		resp.ErrorCode = check(req.CoordinatorKey)
		if resp.ErrorCode == 0 {
			resp.NodeID = env.NodeID
			resp.Host, resp.Port = conn.Advertised(env)
		} else {
			resp.NodeID, resp.Port = -1, -1
		}
		return resp, nil
	}
	for _, key := range req.CoordinatorKeys {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = key
		c.ErrorCode = check(key)
		if c.ErrorCode == 0 {
			c.NodeID = env.NodeID
			c.Host, c.Port = conn.Advertised(env)
		} else {
			c.NodeID, c.Port = -1, -1
		}
		resp.Coordinators = append(resp.Coordinators, c)
	}
	return resp, nil
}
