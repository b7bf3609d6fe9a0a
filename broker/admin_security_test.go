package broker_test

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"net/http"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/testkit"
)

// TestAdminHTTPNeedsTLSAndAUserWhenSecurityIsOn: with SASL_SSL listeners
// and the authorizer, /metrics needs HTTPS and a broker user who may
// DESCRIBE the cluster; /healthz stays open to probes.
func TestAdminHTTPNeedsTLSAndAUserWhenSecurityIsOn(t *testing.T) {
	ca := testkit.NewCA(t, "admin test CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	b := lockedBroker(t,
		broker.WithProperty("listeners", "SASL_SSL://127.0.0.1:0"),
		broker.WithProperty("ssl.keystore.certificate.chain", string(srv.CertPEM)),
		broker.WithProperty("ssl.keystore.key", string(srv.KeyPEM)))
	https := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	get := func(c *http.Client, url, user, pass string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	base := "https://" + b.AdminAddr()
	for name, c := range map[string]struct {
		url, user, pass string
		want            int
	}{
		"metrics, no credentials":   {base + "/metrics", "", "", http.StatusUnauthorized},
		"metrics, wrong password":   {base + "/metrics", "admin", "guess", http.StatusUnauthorized},
		"metrics, user without ACL": {base + "/metrics", "alice", "alice-pw", http.StatusUnauthorized},
		"metrics, super user":       {base + "/metrics", "admin", "admin-pw", http.StatusOK},
		"healthz, open":             {base + "/healthz", "", "", http.StatusOK},
	} {
		if got := get(https, c.url, c.user, c.pass); got != c.want {
			t.Errorf("%s: status %d, want %d", name, got, c.want)
		}
	}
	if got := get(&http.Client{Timeout: 5 * time.Second}, "http://"+b.AdminAddr()+"/healthz", "", ""); got == http.StatusOK {
		t.Error("the admin server answered plain HTTP")
	}
}
