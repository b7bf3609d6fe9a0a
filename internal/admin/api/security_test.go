package api_test

import (
	"net/http"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// TestTheAPIActsAsTheAuthenticatedUser: with a SASL listener and the
// authorizer, the API's Kafka client connects as the HTTP Basic user, so
// the user's ACLs decide: alice, who may only describe the cluster (what
// the admin server asks of its users), is refused topics with 403; the
// super user is not.
func TestTheAPIActsAsTheAuthenticatedUser(t *testing.T) {
	b := brokertest.Run(t, append(brokerkit.LockedDownBroker(t, "admin", "alice"), broker.WithTopics("orders"))...)
	adm := kadm.NewClient(b.Client(t, kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha256Mechanism())))
	acl := kadm.NewACLs().Allow("User:alice").Clusters().Operations(kadm.OpDescribe)
	if res, err := adm.CreateACLs(ctx(t), acl); err != nil || res[0].Err != nil {
		t.Fatalf("create ACL: %v %v", err, res)
	}

	anonymous := newClient(t, b)
	if got, _ := anonymous.do("GET", "/v1/topics", nil, nil); got != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d, want 401", got)
	}
	alice := newClient(t, b)
	alice.user, alice.pass = "alice", "alice-pw"
	alice.refused(http.StatusForbidden, "GET", "/v1/topics/orders", nil)
	alice.refused(http.StatusForbidden, "POST", "/v1/topics", map[string]any{"name": "alices"})
	alice.refused(http.StatusForbidden, "POST", "/v1/topics/orders/messages", map[string]any{"value": "x"})
	var topics []map[string]any
	alice.must(http.StatusOK, "GET", "/v1/topics", nil, &topics)
	if len(topics) != 0 {
		t.Errorf("alice sees topics she may not describe: %v", topics)
	}

	admin := newClient(t, b)
	admin.user, admin.pass = "admin", "admin-pw"
	admin.must(http.StatusOK, "GET", "/v1/topics/orders", nil, nil)
	admin.must(http.StatusCreated, "POST", "/v1/topics/orders/messages", map[string]any{"value": "x"}, nil)
}
