package interop

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/testkit"
)

// secured is a broker with every security protocol: SASL_PLAINTEXT,
// SASL_SSL and SSL with client certificates, the authorizer on, admin as
// the super user, users admin and alice (SCRAM-SHA-256 and -512, password
// <name>-pw) created before the first start, and the TLS material in dir.
type secured struct {
	*brokertest.Broker
	dir                     string
	caFile                  string
	clientCert, clientKey   string // CN=admin, for SSL
	strangerCert, strangerK string // CN=admin from another CA
}

func secureBroker(t *testing.T, extra ...broker.Option) *secured {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s, err := security.Open(security.StoreConfig{FS: logstore.OSFS(), Dir: filepath.Join(data, "__security")})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"admin", "alice"} {
		for _, m := range []security.ScramMechanism{security.ScramSHA256, security.ScramSHA512} {
			c, err := security.NewCredential(m, u+"-pw", security.MinIterations)
			if err != nil {
				t.Fatal(err)
			}
			if errs := s.AlterCredentials(context.Background(), []security.CredentialChange{{User: u, Mechanism: m, Credential: &c}}); errs[0] != nil {
				t.Fatal(errs[0])
			}
		}
	}
	s.Close()
	ca := testkit.NewCA(t, "idem interop test CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	cli := ca.Issue(t, pkix.Name{CommonName: "admin"})
	other := testkit.NewCA(t, "a stranger's CA").Issue(t, pkix.Name{CommonName: "admin"})
	sec := &secured{
		dir:          dir,
		caFile:       testkit.WriteFile(t, dir, "ca.pem", ca.CertPEM),
		clientCert:   testkit.WriteFile(t, dir, "client.pem", cli.CertPEM),
		clientKey:    testkit.WriteFile(t, dir, "client.key", cli.KeyPEM),
		strangerCert: testkit.WriteFile(t, dir, "stranger.pem", other.CertPEM),
		strangerK:    testkit.WriteFile(t, dir, "stranger.key", other.KeyPEM),
	}
	sec.Broker = startBroker(t, append([]broker.Option{
		broker.WithDataDir(data),
		broker.WithProperty("listeners", "SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0"),
		broker.WithProperty("ssl.keystore.location", testkit.WriteFile(t, dir, "broker.pem", srv.CertPEM, srv.KeyPEM)),
		broker.WithProperty("ssl.truststore.location", sec.caFile),
		broker.WithProperty("ssl.client.auth", "requested"),
		broker.WithProperty("ssl.principal.mapping.rules", "RULE:^CN=([^,]+)$/$1/,DEFAULT"),
		broker.WithProperty("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER"),
		broker.WithProperty("idem.sasl.oauthbearer.unsecured.jwt.enable", "true"),
		broker.WithProperty("authorizer.class.name", "idem"),
		broker.WithProperty("super.users", "User:admin"),
	}, extra...)...)
	return sec
}

// TestFranzGoSASLTestsPassAgainstIdem runs franz-go's own TestSCRAMAuth,
// TestSCRAMAuthBadCredentials and TestOAuthAuth (from the module cache)
// against idem, configured as their helpers read it (KGO_TEST_SCRAM,
// KGO_TEST_SCRAM_SEEDS, KGO_TEST_OAUTH_SEEDS). Each must run, not skip.
func TestFranzGoSASLTestsPassAgainstIdem(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles franz-go's test binary")
	}
	b := secureBroker(t)
	addr := b.ListenerAddr("SASL_PLAINTEXT")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "github.com/twmb/franz-go/pkg/kgo", "-count=1", "-v",
		"-run", "^(TestSCRAMAuth|TestSCRAMAuthBadCredentials|TestOAuthAuth)$")
	cmd.Env = append(os.Environ(),
		"KGO_SEEDS="+addr,
		"KGO_TEST_SCRAM=admin:admin-pw:256",
		"KGO_TEST_SCRAM_SEEDS="+addr,
		"KGO_TEST_OAUTH_SEEDS="+addr,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("franz-go's tests:\n%s", out.String())
	if err != nil {
		t.Fatalf("go test franz-go: %v", err)
	}
	for _, name := range []string{"TestSCRAMAuth", "TestSCRAMAuthBadCredentials", "TestOAuthAuth"} {
		if !regexp.MustCompile(`--- PASS: ` + name + ` `).MatchString(out.String()) {
			t.Errorf("%s did not pass (skipped or missing)", name)
		}
	}
}

// kcatRun runs kcat and returns its output and error, for tests that
// expect it to fail.
func kcatRun(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	path := testkit.RequireTool(t, "kcat", "install the Debian package kcat")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestKcatSecurityProtocols: librdkafka 2.0.2 over SASL_SSL with PLAIN and
// SCRAM, and over SSL with a client certificate; a wrong password, a
// certificate from another CA and a plaintext client are refused.
func TestKcatSecurityProtocols(t *testing.T) {
	b := secureBroker(t, broker.WithTopics("kcat-secure"))
	saslSSL := []string{"-X", "security.protocol=SASL_SSL", "-X", "ssl.ca.location=" + b.caFile}
	user := func(mech, name, pass string) []string {
		return append(append([]string{}, saslSSL...), "-X", "sasl.mechanisms="+mech, "-X", "sasl.username="+name, "-X", "sasl.password="+pass)
	}
	// Refusals first. kcat -L with a short timeout fails when the broker
	// refuses it.
	for name, args := range map[string][]string{
		"wrong password":       user("SCRAM-SHA-256", "admin", "guess"),
		"unknown user (PLAIN)": user("PLAIN", "nobody", "admin-pw"),
		"plaintext client":     {},
		"stranger certificate": {"-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + b.caFile, "-X", "ssl.certificate.location=" + b.strangerCert, "-X", "ssl.key.location=" + b.strangerK},
	} {
		addr := b.ListenerAddr("SASL_SSL")
		if name == "stranger certificate" {
			addr = b.ListenerAddr("SSL")
		}
		out, err := kcatRun(t, "", append(append([]string{"-b", addr, "-L", "-m", "3"}, args...), "-t", "kcat-secure")...)
		if err == nil && strings.Contains(out, "kcat-secure") {
			t.Errorf("%s: kcat saw the topic:\n%s", name, out)
		}
	}
	// SASL_SSL with SCRAM-SHA-512 produces, PLAIN consumes.
	var in strings.Builder
	for i := range 20 {
		in.WriteString("secure-" + string(rune('a'+i)) + "\n")
	}
	if out, err := kcatRun(t, in.String(), append([]string{"-b", b.ListenerAddr("SASL_SSL"), "-P", "-t", "kcat-secure"}, user("SCRAM-SHA-512", "admin", "admin-pw")...)...); err != nil {
		t.Fatalf("kcat produce over SASL_SSL/SCRAM-SHA-512: %v\n%s", err, out)
	}
	out, err := kcatRun(t, "", append([]string{"-b", b.ListenerAddr("SASL_SSL"), "-C", "-t", "kcat-secure", "-o", "beginning", "-e", "-q"}, user("PLAIN", "admin", "admin-pw")...)...)
	if err != nil || strings.Count(out, "secure-") != 20 {
		t.Fatalf("kcat consume over SASL_SSL/PLAIN: %v\n%s", err, out)
	}
	// SSL with the admin certificate (mapped to User:admin).
	out, err = kcatRun(t, "", "-b", b.ListenerAddr("SSL"), "-C", "-t", "kcat-secure", "-o", "beginning", "-e", "-q",
		"-X", "security.protocol=SSL", "-X", "ssl.ca.location="+b.caFile,
		"-X", "ssl.certificate.location="+b.clientCert, "-X", "ssl.key.location="+b.clientKey)
	if err != nil || strings.Count(out, "secure-") != 20 {
		t.Fatalf("kcat consume over mTLS: %v\n%s", err, out)
	}
	// alice has no ACL: authenticated, but the topic is not hers to read.
	out, _ = kcatRun(t, "", append([]string{"-b", b.ListenerAddr("SASL_SSL"), "-C", "-t", "kcat-secure", "-o", "beginning", "-e", "-q"}, user("SCRAM-SHA-256", "alice", "alice-pw")...)...)
	if strings.Contains(out, "secure-") || !strings.Contains(strings.ToLower(out), "authoriz") {
		t.Errorf("alice read the topic, or was not told she may not:\n%s", out)
	}
}
