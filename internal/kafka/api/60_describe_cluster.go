package api

// DescribeCluster, versions 0–1 (KIP-700; admin clients such as kadm use it).
// One broker, which is also the controller. v1's EndpointType must be 1
// (brokers); controller endpoints (2) are not exposed: UNSUPPORTED_ENDPOINT_TYPE.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(60, 0, 1, handleDescribeCluster) }

func handleDescribeCluster(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if req.GetVersion() >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return resp, nil
	}
	if !allowedCluster(env, conn, security.OpDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil
	}
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = authorizedOps(env, conn, security.ResourceCluster, security.ClusterName, clusterOps)
	}
	resp.EndpointType = 1
	resp.ClusterID = env.ClusterID
	resp.ControllerID = env.NodeID
	b := kmsg.NewDescribeClusterResponseBroker()
	b.NodeID = env.NodeID
	b.Host, b.Port = conn.Advertised(env)
	resp.Brokers = append(resp.Brokers, b)
	return resp, nil
}
