package console_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// TestTheConsoleShowsWhatTheUserMaySee: with the authorizer on, the console
// acts as the Basic user: alice, who may only describe the cluster, gets
// the 403 page for a topic and an empty topic list; the super user sees
// the topic.
func TestTheConsoleShowsWhatTheUserMaySee(t *testing.T) {
	b := brokertest.Run(t, append(brokerkit.LockedDownBroker(t, "admin", "alice"), broker.WithTopics("orders"))...)
	adm := kadm.NewClient(b.Client(t, kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha256Mechanism())))
	if res, err := adm.CreateACLs(brokertest.Ctx(t), kadm.NewACLs().Allow("User:alice").Clusters().Operations(kadm.OpDescribe)); err != nil || res[0].Err != nil {
		t.Fatalf("create ACL: %v %v", err, res)
	}
	page := func(user, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", b.AdminURL()+path, nil)
		if user != "" {
			req.SetBasicAuth(user, user+"-pw")
		}
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, _ := page("", "/"); status != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", status)
	}
	if status, _ := page("alice", "/topics/orders"); status != http.StatusForbidden {
		t.Errorf("alice, a topic she may not describe: %d, want 403", status)
	}
	if status, body := page("alice", "/topics"); status != http.StatusOK || strings.Contains(body, `href="/topics/orders"`) {
		t.Errorf("alice's topic list: %d, shows orders: %t", status, strings.Contains(body, "orders"))
	}
	if status, body := page("admin", "/topics"); status != http.StatusOK || !strings.Contains(body, `href="/topics/orders"`) {
		t.Errorf("admin's topic list: %d, lacks orders", status)
	}
}
